"""Real TEE backends: evidence from the Linux guest interfaces of the machine we run on.

Three backends, each an :class:`~attestcall.abi.EvidenceSource`:

    tsm        configfs-tsm reports (SEV-SNP or TDX guest)       TsmSource
    sev-guest  /dev/sev-guest ioctls (SEV-SNP guest)             SevGuestSource
    gramine    Gramine's /dev/attestation (SGX enclave, DCAP)    GramineSource

Here the guest kernel (or Gramine's LibOS) is the trusted side that talks to the platform,
so there is no untrusted host process in the keep. The payload is not measured by
attestcall: the evidence covers what the platform measured at launch (the VM image, the
enclave), which is where a real payload has to be.

:func:`probe` says which backends this machine offers and why the others are not usable;
:func:`detect` picks the first usable one; :func:`open_real` opens one by name. Every path
is a parameter so that tests point them at fakes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from attestcall import tsm
from attestcall.abi import PlatformFailure, Technology
from attestcall.amd import efi_secret, sev_guest
from attestcall.amd.sev_guest import SevGuestDevice
from attestcall.errors import AttestcallError
from attestcall.intel import gramine
from attestcall.intel.gramine import GramineClient
from attestcall.keep.keep import Keep
from attestcall.kernelfs import Files, OsFiles, describe_os_error
from attestcall.tsm import TsmClient

TSM = "tsm"
SEV_GUEST = "sev-guest"
GRAMINE = "gramine"
EFI_SECRET = "efi-secret"
NAMES = (TSM, SEV_GUEST, GRAMINE, EFI_SECRET)  # also the order probe() and detect() try them in


class BackendUnavailable(AttestcallError):
    """A real backend was asked for but this machine does not offer it."""


# ---------------------------------------------------------------------------- sources


class TsmSource:
    """configfs-tsm: technology 3 (sev_guest) or 4 (tdx_guest), fixed when opened."""

    def __init__(self, client: TsmClient, provider: str | None = None):
        self.client = client
        self.provider = provider if provider is not None else client.provider()
        self.technology = int(tsm.PROVIDERS[self.provider])

    def evidence_size(self) -> int:
        return self.client.evidence_size(self.provider)

    def evidence(self, nonce: bytes) -> bytes:
        report = self.client.report(nonce)
        if report.provider != self.provider:
            raise tsm.TsmError(f"configfs-tsm: the provider changed from {self.provider} to "
                               f"{report.provider}")
        return report.evidence


class SevGuestSource:
    """/dev/sev-guest: technology 3. configfs-tsm has no size query and neither has the
    device: the size is learned from one real report (zero nonce) and cached; every report
    refreshes it."""

    technology = int(Technology.SNP)

    def __init__(self, device: SevGuestDevice):
        self.device = device
        self._size: int | None = None

    def evidence_size(self) -> int:
        if self._size is None:
            self.evidence(bytes(64))
        assert self._size is not None
        return self._size

    def evidence(self, nonce: bytes) -> bytes:
        evidence = self.device.evidence(nonce)
        self._size = len(evidence)
        return evidence


class GramineSource:
    """Gramine's /dev/attestation: technology 2 (a DCAP quote)."""

    technology = int(Technology.SGX)

    def __init__(self, client: GramineClient):
        self.client = client

    def evidence_size(self) -> int:
        return self.client.quote_size()

    def evidence(self, nonce: bytes) -> bytes:
        return self.client.quote(nonce)


# ---------------------------------------------------------------------------- probing


@dataclass(frozen=True)
class ProbeResult:
    """One backend on this machine: usable or not, and why."""

    name: str
    path: str
    usable: bool
    detail: str
    technology: int | None = None


@dataclass(frozen=True)
class Paths:
    """Where the backends live; the defaults are the real ones."""

    tsm_root: str = tsm.DEFAULT_ROOT
    sev_guest: str = sev_guest.DEVICE
    gramine_root: str = gramine.DEFAULT_ROOT
    efi_secret_root: str = efi_secret.DEFAULT_ROOT

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> Paths:
        return cls(
            tsm_root=options.get("tsm_root") or tsm.DEFAULT_ROOT,
            sev_guest=options.get("sev_guest_path") or sev_guest.DEVICE,
            gramine_root=options.get("gramine_root") or gramine.DEFAULT_ROOT,
            efi_secret_root=options.get("efi_secret_root") or efi_secret.DEFAULT_ROOT,
        )


def probe_tsm(root: str = tsm.DEFAULT_ROOT, files: Files | None = None) -> ProbeResult:
    """configfs-tsm: the report directory exists, is writable, and has a provider we know
    (learned by making and removing one report instance)."""
    files = files if files is not None else OsFiles()
    if not files.exists(root):
        return ProbeResult(TSM, root, False, "not present (configfs not mounted, or a kernel "
                           "without CONFIG_TSM_REPORTS)")
    if not files.writable(root):
        return ProbeResult(TSM, root, False, "not writable (needs root)")
    try:
        provider = TsmClient(root, files=files).provider()
    except tsm.TsmError as exc:
        return ProbeResult(TSM, root, False, str(exc))
    technology = int(tsm.PROVIDERS[provider])
    return ProbeResult(TSM, root, True, f"provider {provider} "
                       f"({Technology(technology).name}, technology {technology})", technology)


def probe_sev_guest(path: str = sev_guest.DEVICE) -> ProbeResult:
    """/dev/sev-guest: exists and opens read-write (no request is sent)."""
    if not os.path.exists(path):
        return ProbeResult(SEV_GUEST, path, False, "not present (not an SEV-SNP guest, or "
                           "the sev-guest driver is not loaded)")
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        return ProbeResult(SEV_GUEST, path, False, f"cannot open: {describe_os_error(exc)}")
    os.close(fd)
    return ProbeResult(SEV_GUEST, path, True, "opens (SNP, technology 3)", int(Technology.SNP))


def probe_gramine(root: str = gramine.DEFAULT_ROOT, files: Files | None = None) -> ProbeResult:
    """Gramine: /dev/attestation exists and its attestation type is dcap."""
    files = files if files is not None else OsFiles()
    if not files.exists(root):
        return ProbeResult(GRAMINE, root, False, "not present (not inside Gramine with SGX)")
    client = GramineClient(root, files=files)
    try:
        kind = client.attestation_type()
    except gramine.GramineError as exc:
        return ProbeResult(GRAMINE, root, False, str(exc))
    if kind != gramine.DCAP:
        why = ("EPID is not supported: technology 2 is a DCAP quote" if kind == "epid"
               else "set sgx.remote_attestation = \"dcap\" in the manifest")
        return ProbeResult(GRAMINE, root, False, f"attestation type {kind!r}: {why}")
    if not files.exists(os.path.join(root, gramine.QUOTE)):
        return ProbeResult(GRAMINE, root, False, "attestation type dcap but no quote file")
    return ProbeResult(GRAMINE, root, True, "attestation type dcap (SGX, technology 2)",
                       int(Technology.SGX))


def probe_efi_secret(
    root: str = efi_secret.DEFAULT_ROOT, files: Files | None = None
) -> ProbeResult:
    """efi_secret (SEV pre-attestation): the tenant's key was injected under attestcall's
    GUID."""
    source = efi_secret.EfiSecretSource(root, files=files)
    if not (files if files is not None else OsFiles()).exists(root):
        return ProbeResult(EFI_SECRET, root, False, "not present (not a SEV guest with a "
                           "launch secret, or the efi_secret driver is not loaded)")
    if not source.available():
        return ProbeResult(EFI_SECRET, root, False, f"no attestcall secret ({source.guid}) "
                           "was injected")
    return ProbeResult(EFI_SECRET, root, True, "the tenant's key is there (SEV, technology 1)",
                       int(Technology.SEV))


def probe(paths: Paths | None = None, files: Files | None = None) -> list[ProbeResult]:
    """Every real backend, in detection order: configfs-tsm, /dev/sev-guest, Gramine,
    efi_secret."""
    paths = paths if paths is not None else Paths()
    return [
        probe_tsm(paths.tsm_root, files),
        probe_sev_guest(paths.sev_guest),
        probe_gramine(paths.gramine_root, files),
        probe_efi_secret(paths.efi_secret_root, files),
    ]


def detect(paths: Paths | None = None, files: Files | None = None) -> str | None:
    """The name of the first usable real backend, or None."""
    for result in probe(paths, files):
        if result.usable:
            return result.name
    return None


def describe_probes(results: Sequence[ProbeResult]) -> str:
    """What ``attestcall devices`` prints: one line per backend, then the choice."""
    width = max((len(r.name) for r in results), default=0)
    lines = []
    for result in results:
        state = "usable" if result.usable else "unusable"
        lines.append(f"{result.name:<{width}}  {state:<8}  {result.path}: {result.detail}")
    chosen = next((r.name for r in results if r.usable), None)
    lines.append(f"--tee auto would use: {chosen}" if chosen else
                 "--tee auto would use: none (no real TEE interface found)")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- opening


def _option_int(options: Mapping[str, Any], key: str) -> int | None:
    value = options.get(key)
    return None if value is None else int(value)


def open_real(name: str, payload: bytes, options: Mapping[str, Any]) -> Keep:
    """Open the real backend ``name`` (tsm, sev-guest, gramine).

    Options (all optional): ``tsm_root``, ``sev_guest_path``, ``gramine_root`` (paths),
    ``files`` (a :class:`~attestcall.kernelfs.Files`), ``ioctl`` (for /dev/sev-guest),
    ``privlevel`` (the SNP VMPL to request, for tsm and sev-guest). ``payload`` is not
    measured (see the module documentation). Raises BackendUnavailable when the machine
    does not offer ``name``."""
    del payload
    paths = Paths.from_options(options)
    files: Files | None = options.get("files")
    privlevel = _option_int(options, "privlevel")
    if name == TSM:
        result = probe_tsm(paths.tsm_root, files)
        if not result.usable:
            raise BackendUnavailable(f"--tee tsm: {result.path}: {result.detail}")
        client = TsmClient(paths.tsm_root, files=files, privlevel=privlevel)
        try:
            source = TsmSource(client)
        except PlatformFailure as exc:
            raise BackendUnavailable(f"--tee tsm: {exc}") from exc
        return Keep(TSM, source, details={"path": paths.tsm_root, "provider": source.provider,
                                          "technology": source.technology})
    if name == SEV_GUEST:
        result = probe_sev_guest(paths.sev_guest)
        if not result.usable:
            raise BackendUnavailable(f"--tee sev-guest: {result.path}: {result.detail}")
        kwargs: dict[str, Any] = {"vmpl": privlevel or 0}
        if options.get("ioctl") is not None:
            kwargs["ioctl"] = options["ioctl"]
        device = SevGuestDevice(paths.sev_guest, **kwargs)
        return Keep(SEV_GUEST, SevGuestSource(device),
                    details={"path": paths.sev_guest, "technology": int(Technology.SNP)})
    if name == GRAMINE:
        result = probe_gramine(paths.gramine_root, files)
        if not result.usable:
            raise BackendUnavailable(f"--tee gramine: {result.path}: {result.detail}")
        client = GramineClient(paths.gramine_root, files=files)
        return Keep(GRAMINE, GramineSource(client),
                    details={"path": paths.gramine_root, "technology": int(Technology.SGX)})
    if name == EFI_SECRET:
        result = probe_efi_secret(paths.efi_secret_root, files)
        if not result.usable:
            raise BackendUnavailable(f"--tee efi-secret: {result.path}: {result.detail}")
        return Keep(EFI_SECRET, efi_secret.EfiSecretSource(paths.efi_secret_root, files=files),
                    details={"path": paths.efi_secret_root, "technology": int(Technology.SEV)})
    raise ValueError(f"unknown real backend {name!r}; choose one of {', '.join(NAMES)}")


def open_tsm(payload: bytes, options: Mapping[str, Any]) -> Keep:
    return open_real(TSM, payload, options)


def open_sev_guest(payload: bytes, options: Mapping[str, Any]) -> Keep:
    return open_real(SEV_GUEST, payload, options)


def open_gramine(payload: bytes, options: Mapping[str, Any]) -> Keep:
    return open_real(GRAMINE, payload, options)


def open_efi_secret(payload: bytes, options: Mapping[str, Any]) -> Keep:
    return open_real(EFI_SECRET, payload, options)
