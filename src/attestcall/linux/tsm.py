"""configfs-tsm attestation reports, shared by SEV-SNP and TDX guests (Linux 6.7 on).

The kernel's interface (Documentation/ABI/testing/configfs-tsm): each directory made
under ``/sys/kernel/config/tsm/report/`` is one report instance with the attributes

    provider          (RO) the format of outblob: "sev_guest" or "tdx_guest"
    generation        (RO) counts the writes to inblob and privlevel
    inblob            (WO) up to 64 bytes; both providers refuse any length but 64 (EINVAL
                      when the report is generated); more than 64 is EFBIG at write
    privlevel         (WO) the SNP VMPL to report at, privlevel_floor..3 (sev_guest only)
    privlevel_floor   (RO)
    outblob           (RO) the report, generated from inblob when first read
    auxblob           (RO) sev_guest only: the GHCB certificate table (possibly empty)

mkdir fails with ENXIO while no provider is registered; writes fail with EBUSY when a
report instance has been written about 2**64 times without a read. Several processes may
share a directory, so the protocol here reads ``generation`` before writing and after
reading: it must have moved by exactly the writes made. More means another writer got in
between (retried, a bounded number of times, in a fresh directory); fewer means a write was
dropped (older kernels ignore an inblob commit error at close). Every directory this
module makes is removed again, whatever happens.

configfs-tsm has no size query: the evidence size is learned by producing one real
report (with a zero nonce) and is cached per provider. Evidence is ``outblob`` for
tdx_guest (a DCAP quote, technology 4) and ``outblob`` followed by ``auxblob`` for
sev_guest (the 1184-byte ATTESTATION_REPORT and the certificate table, technology 3).
"""

from __future__ import annotations

import errno
import itertools
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from attestcall.abi import NONCE_SIZE, PlatformFailure
from attestcall.errors import BackendUnavailable
from attestcall.linux.kernelfs import Files, OsFiles, describe_os_error
from attestcall.tees import OpenedKeep, Probe, TsmProvider, registry

DEFAULT_ROOT = "/sys/kernel/config/tsm/report"
INBLOB_SIZE = NONCE_SIZE
PRIVLEVEL_MAX = 3
NAME = "tsm"
DEFAULT_ATTEMPTS = 3


def provider(name: str) -> tuple[int, TsmProvider] | None:
    """The technology id and the provider record a registered TEE gives ``name``."""
    tee = registry().by_tsm_provider(name)
    return None if tee is None or tee.tsm is None else (tee.technology, tee.tsm)


def provider_names() -> list[str]:
    return [t.tsm.name for t in registry().tees if t.tsm is not None]

_counter = itertools.count()


class TsmError(PlatformFailure):
    """configfs-tsm did not produce a report (the message says which step and why)."""

    def __init__(self, message: str, code: int | None = None):
        super().__init__(message)
        self.errno = code


class TsmRaceError(TsmError):
    """Another writer changed the report instance every time it was tried."""


@dataclass(frozen=True)
class TsmReport:
    """One report read back from a report instance."""

    provider: str
    outblob: bytes
    auxblob: bytes

    @property
    def technology(self) -> int:
        found = provider(self.provider)
        assert found is not None  # the client accepts only registered providers
        return found[0]

    @property
    def evidence(self) -> bytes:
        """What get_attestation returns: outblob, then auxblob when the provider has one."""
        return self.outblob + self.auxblob


_HINTS = {
    errno.ENXIO: "no TSM provider is registered (is a guest driver that provides one "
                 "loaded: {providers}?)",
    errno.ENOTTY: "the TSM provider went away",
    errno.EBUSY: "the report instance refuses writes until it is read (another writer?)",
    errno.EFBIG: "inblob takes at most 64 bytes",
    errno.EINVAL: "the provider refused the request (inblob not 64 bytes, or privlevel "
                  "outside privlevel_floor..3)",
    errno.ENOENT: "configfs-tsm is not there (configfs not mounted at /sys/kernel/config, "
                  "or a kernel without CONFIG_TSM_REPORTS)",
    errno.EACCES: "permission denied (configfs-tsm needs root)",
    errno.EPERM: "permission denied (configfs-tsm needs root)",
}


def _failure(step: str, path: str, exc: OSError) -> TsmError:
    hint = _HINTS.get(exc.errno or 0, "").replace("{providers}", ", ".join(provider_names()))
    message = f"configfs-tsm: {step} {path}: {describe_os_error(exc)}"
    if hint:
        message += f": {hint}"
    return TsmError(message, exc.errno)


class TsmClient:
    """Reports from configfs-tsm under ``root``.

    ``privlevel`` (0-3), when given, is written before inblob (sev_guest only: it is the
    VMPL the report is requested for). ``attempts`` bounds the retries after a concurrent
    writer. ``files`` is the filesystem (the real one by default)."""

    def __init__(
        self,
        root: str = DEFAULT_ROOT,
        *,
        files: Files | None = None,
        privlevel: int | None = None,
        attempts: int = DEFAULT_ATTEMPTS,
    ):
        if privlevel is not None and not 0 <= privlevel <= PRIVLEVEL_MAX:
            raise ValueError(f"privlevel must be 0..{PRIVLEVEL_MAX}, not {privlevel}")
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self.root = root
        self.files: Files = files if files is not None else OsFiles()
        self.privlevel = privlevel
        self.attempts = attempts
        self._sizes: dict[str, int] = {}

    # ------------------------------------------------------------------ public

    def provider(self) -> str:
        """The registered provider's name, read from a short-lived report instance."""
        path = self._make_instance()
        try:
            return self._read_provider(path)[0]
        finally:
            self._remove(path, failing=None)

    def report(self, inblob: bytes) -> TsmReport:
        """A report for the 64 bytes ``inblob``; TsmError when there is none."""
        inblob = bytes(inblob)
        if len(inblob) != INBLOB_SIZE:
            raise ValueError(f"inblob must be {INBLOB_SIZE} bytes, not {len(inblob)}")
        for _ in range(self.attempts):
            report = self._attempt(inblob)
            if report is not None:
                self._sizes[report.provider] = len(report.evidence)
                return report
        raise TsmRaceError(f"configfs-tsm: another writer changed the report instance during "
                           f"each of {self.attempts} attempts")

    def evidence_size(self, provider: str) -> int:
        """The evidence size for ``provider``: learned from one real report with a zero
        nonce (configfs-tsm has no size query), then cached; every report refreshes it."""
        size = self._sizes.get(provider)
        if size is None:
            report = self.report(bytes(INBLOB_SIZE))
            if report.provider != provider:
                raise TsmError(f"configfs-tsm: the provider changed from {provider} to "
                               f"{report.provider}")
            size = self._sizes[provider]
        return size

    # ------------------------------------------------------------------ steps

    def _attempt(self, inblob: bytes) -> TsmReport | None:
        """One report in a fresh instance; None when a concurrent writer got in."""
        path = self._make_instance()
        failing: BaseException | None = None
        try:
            name, spec = self._read_provider(path)
            before = self._read_generation(path)
            writes = 0
            if self.privlevel is not None:
                if not spec.privlevel:
                    raise TsmError(f"configfs-tsm: provider {name} has no privlevel")
                self._write(path, "privlevel", f"{self.privlevel}\n".encode())
                writes += 1
            self._write(path, "inblob", inblob)
            writes += 1
            outblob = self._read(path, "outblob")
            auxblob = self._read(path, "auxblob") if spec.auxblob else b""
            after = self._read_generation(path)
        except BaseException as exc:
            failing = exc
            raise
        finally:
            self._remove(path, failing)
        if after > before + writes:
            return None
        if after < before + writes:
            raise TsmError(f"configfs-tsm: generation went from {before} to {after} over "
                           f"{writes} write(s): a write was not accepted")
        if not outblob:
            raise TsmError(f"configfs-tsm: {name} returned an empty outblob")
        if spec.outblob_size is not None and len(outblob) != spec.outblob_size:
            raise TsmError(f"configfs-tsm: {name} outblob is {len(outblob)} bytes, "
                           f"not {spec.outblob_size}")
        return TsmReport(name, outblob, auxblob)

    def _make_instance(self) -> str:
        name = f"attestcall-{os.getpid()}-{next(_counter)}-{secrets.token_hex(4)}"
        path = os.path.join(self.root, name)
        try:
            self.files.mkdir(path)
        except OSError as exc:
            raise _failure("cannot create report instance", path, exc) from exc
        return path

    def _remove(self, path: str, failing: BaseException | None) -> None:
        """rmdir ``path``. A failure is raised unless another error is already on its way
        (which then carries this one as context)."""
        try:
            self.files.rmdir(path)
        except OSError as exc:
            if failing is None:
                raise _failure("cannot remove report instance", path, exc) from exc
            failing.add_note(f"also: cannot remove {path}: {describe_os_error(exc)}")

    def _read(self, directory: str, name: str) -> bytes:
        path = os.path.join(directory, name)
        try:
            return self.files.read(path)
        except OSError as exc:
            raise _failure("cannot read", path, exc) from exc

    def _write(self, directory: str, name: str, data: bytes) -> None:
        path = os.path.join(directory, name)
        try:
            written = self.files.write(path, data)
        except OSError as exc:
            raise _failure("cannot write", path, exc) from exc
        if written != len(data):
            raise TsmError(f"configfs-tsm: short write to {path}: {written} of {len(data)} "
                           "bytes")

    def _read_provider(self, path: str) -> tuple[str, TsmProvider]:
        raw = self._read(path, "provider")
        name = raw.decode("ascii", "replace").strip()
        found = provider(name)
        if found is None:
            raise TsmError(f"configfs-tsm: unsupported provider {name!r} (attestcall knows "
                           f"{', '.join(provider_names())})")
        return name, found[1]

    def _read_generation(self, path: str) -> int:
        raw = self._read(path, "generation").strip()
        if not raw.isdigit():
            raise TsmError(f"configfs-tsm: generation {raw[:32]!r} is not a number")
        return int(raw)


# ------------------------------------------------------------------ the tsm keep


class TsmSource:
    """configfs-tsm as an EvidenceSource: the technology of the provider, fixed when
    opened. configfs-tsm has no size query: see :meth:`TsmClient.evidence_size`."""

    def __init__(self, client: TsmClient, provider_name: str | None = None):
        self.client = client
        self.provider = provider_name if provider_name is not None else client.provider()
        found = provider(self.provider)
        if found is None:
            raise TsmError(f"configfs-tsm: unsupported provider {self.provider!r}")
        self.technology = found[0]

    def evidence_size(self) -> int:
        return self.client.evidence_size(self.provider)

    def evidence(self, nonce: bytes) -> bytes:
        report = self.client.report(nonce)
        if report.provider != self.provider:
            raise TsmError(f"configfs-tsm: the provider changed from {self.provider} to "
                           f"{report.provider}")
        return report.evidence


def probe_tsm(root: str = DEFAULT_ROOT, files: Files | None = None) -> Probe:
    """configfs-tsm: the report directory exists, is writable, and has a provider we know
    (learned by making and removing one report instance)."""
    files = files if files is not None else OsFiles()
    if not files.exists(root):
        return Probe(NAME, root, False, "not present (configfs not mounted, or a kernel "
                     "without CONFIG_TSM_REPORTS)")
    if not files.writable(root):
        return Probe(NAME, root, False, "not writable (needs root)")
    try:
        name = TsmClient(root, files=files).provider()
    except TsmError as exc:
        return Probe(NAME, root, False, str(exc))
    technology = provider(name)[0]  # type: ignore[index]
    label = registry().label(technology)
    return Probe(NAME, root, True, f"provider {name} ({label}, technology {technology})",
                 technology)


def probe(options: Mapping[str, Any]) -> Probe:
    """The probe with the paths in ``options`` (``attestcall devices``, ``--tee auto``)."""
    return probe_tsm(options.get("tsm_root") or DEFAULT_ROOT, options.get("files"))


def open_tsm(payload: bytes, options: Mapping[str, Any], services: object) -> OpenedKeep:
    """The configfs-tsm keep. Options: ``tsm_root``, ``files``, ``privlevel``. The payload
    is not measured: the evidence covers what the platform measured at launch."""
    del payload, services
    root = options.get("tsm_root") or DEFAULT_ROOT
    result = probe_tsm(root, options.get("files"))
    if not result.usable:
        raise BackendUnavailable(f"--tee {NAME}: {result.path}: {result.detail}")
    privlevel = options.get("privlevel")
    client = TsmClient(root, files=options.get("files"),
                       privlevel=None if privlevel is None else int(privlevel))
    try:
        source = TsmSource(client)
    except PlatformFailure as exc:
        raise BackendUnavailable(f"--tee {NAME}: {exc}") from exc
    return OpenedKeep(source, {"path": root, "provider": source.provider,
                               "technology": source.technology})
