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
from dataclasses import dataclass

from attestcall.abi import NONCE_SIZE, PlatformFailure, Technology
from attestcall.kernelfs import Files, OsFiles, describe_os_error

DEFAULT_ROOT = "/sys/kernel/config/tsm/report"
INBLOB_SIZE = NONCE_SIZE
SNP_REPORT_SIZE = 1184
PRIVLEVEL_MAX = 3
DEFAULT_ATTEMPTS = 3

SEV_GUEST = "sev_guest"
TDX_GUEST = "tdx_guest"
PROVIDERS = {SEV_GUEST: Technology.SNP, TDX_GUEST: Technology.TDX}

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
        return int(PROVIDERS[self.provider])

    @property
    def evidence(self) -> bytes:
        """What get_attestation returns: outblob, then auxblob for sev_guest."""
        if self.provider == SEV_GUEST:
            return self.outblob + self.auxblob
        return self.outblob


_HINTS = {
    errno.ENXIO: "no TSM provider is registered (is the sev-guest or tdx-guest driver loaded?)",
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
    hint = _HINTS.get(exc.errno or 0)
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
            return self._read_provider(path)
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
            provider = self._read_provider(path)
            before = self._read_generation(path)
            writes = 0
            if self.privlevel is not None:
                if provider != SEV_GUEST:
                    raise TsmError(f"configfs-tsm: provider {provider} has no privlevel")
                self._write(path, "privlevel", f"{self.privlevel}\n".encode())
                writes += 1
            self._write(path, "inblob", inblob)
            writes += 1
            outblob = self._read(path, "outblob")
            auxblob = self._read(path, "auxblob") if provider == SEV_GUEST else b""
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
            raise TsmError(f"configfs-tsm: {provider} returned an empty outblob")
        if provider == SEV_GUEST and len(outblob) != SNP_REPORT_SIZE:
            raise TsmError(f"configfs-tsm: sev_guest outblob is {len(outblob)} bytes, "
                           f"not {SNP_REPORT_SIZE}")
        return TsmReport(provider, outblob, auxblob)

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

    def _read_provider(self, path: str) -> str:
        raw = self._read(path, "provider")
        name = raw.decode("ascii", "replace").strip()
        if name not in PROVIDERS:
            raise TsmError(f"configfs-tsm: unsupported provider {name!r} (attestcall knows "
                           f"{', '.join(PROVIDERS)})")
        return name

    def _read_generation(self, path: str) -> int:
        raw = self._read(path, "generation").strip()
        if not raw.isdigit():
            raise TsmError(f"configfs-tsm: generation {raw[:32]!r} is not a number")
        return int(raw)
