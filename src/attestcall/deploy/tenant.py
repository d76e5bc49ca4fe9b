"""``attestcall deploy``: the tenant's side. Trust the keep first, then send the workload.

:func:`deploy` connects with TLS 1.3, takes the certificate of *this* TLS session, and
:func:`appraise_certificate` decides on it before a single byte is sent: the evidence in
its CMW extension, bound to the certificate's own key (TLS 1.3 has just proved the keep
holds that key; the certificate's self-signature with that key must verify too),
verified by :func:`attestcall.verify` against the policy. Any refusal raises
:class:`DeployRefused` with every reason, and the connection is closed having sent
nothing. Then HELLO and the workload go out, and the keep's output is written as it
streams in; the workload's exit status is returned.

Intel evidence needs collateral: ``collateral_for(technology, evidence)`` gives it (a path,
JSON text or dict, as ``attestcall.verify`` takes). It sees the evidence because real
collateral depends on the platform the quote names (FMSPC, PCK CA). With
``trust_simulated`` and no provider, the simulators' own collateral is used
(:func:`simulated_collateral`); for real hardware, :func:`pccs_collateral` fetches it from a
PCS/PCCS.

SEV (pre-attestation) has no evidence in the certificate: pass ``expected_public_key``
(the DER SubjectPublicKeyInfo of the key delivered at launch) and the certificate's key
must be exactly that one. Without it, and when the policy lists ``[sev] launch_digest``
values, :func:`deploy` first opens a short plain connection with the provisioning magic
(:mod:`attestcall.deploy.provision_tenant`): an unprovisioned SEV keep is provisioned there (a
fresh key of ``key_type``, default P-384, delivered only after the launch measurement
matched a ``[sev] launch_digest`` of the policy; the tenant keeps only the public key), and
the TLS connection then pins that key. Other keeps answer "not a pre-attestation keep" and
are appraised by their evidence as usual. Without a ``[sev]`` policy no probe is made (one
connection per deployment, as before); a failed handshake is then explained when the keep
turns out to be an unprovisioned SEV keep.

With ``ca`` (a service CA: :mod:`attestcall.deploy.ca_trust`), the certificate is judged by
the attestation service's word instead of by evidence: issued by that CA, valid, not
revoked per its CRL, and its attestation result accepted by the policy. No collateral is
needed and no SEV provisioning is attempted.
"""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import wasmtime
from cryptography import x509

from attestcall import pki
from attestcall.abi import Technology
from attestcall.deploy import protocol, provision_tenant
from attestcall.deploy.ca_trust import CaTrust, Untrusted
from attestcall.deploy.identity import (
    IdentityError,
    check_binding,
    evidence_from_certificate,
)
from attestcall.deploy.keys import (
    UnsupportedKeyType,
    binding_nonce,
    generate_key,
    key_type_of,
    spki_der,
)
from attestcall.deploy.protocol import FrameDecoder, FrameType, ProtocolError
from attestcall.errors import AttestcallError, CollateralError, EvidenceError, PayloadError
from attestcall.tees import registry
from attestcall.tls import GROUPS, TlsError, TlsSocket, client_context
from attestcall.verifier.api import verify
from attestcall.verifier.policy import Policy
from attestcall.verifier.verdict import Verdict

CollateralProvider = Callable[[str, bytes], Any]
_RECV_SIZE = 64 << 10


class DeployError(AttestcallError):
    """Deployment failed."""


class KeepUnreachable(DeployError):
    """No TCP connection to the keep."""


class KeepTimedOut(DeployError):
    """The keep accepted the connection but did not finish the TLS handshake in time: busy,
    overloaded, or not a keep. Not a refusal: it said nothing about trust."""


class DeployRefused(DeployError):
    """The tenant does not trust the keep; nothing of the workload was sent."""

    def __init__(self, reasons: Sequence[str], verdict: Verdict | None = None):
        self.reasons = list(reasons)
        self.verdict = verdict
        super().__init__("the keep is not trusted: " + "; ".join(self.reasons))


class KeepFailed(DeployError):
    """The keep answered ERROR, broke the protocol or went away before EXIT."""


@dataclass(frozen=True)
class KeepConnection:
    """What the tenant saw of a keep it trusted: the TLS version, the key-exchange group
    negotiated (``X25519MLKEM768`` with any keep of this attestcall) and the type of the
    keep's certificate key (``p256``, ``mldsa65``, ...)."""

    address: tuple[str, int]
    version: str
    group: str | None
    key_type: str
    # what vouched for the keep: "evidence" (then ``verdict``), "ca" (the service CA),
    # "launch key" (SEV: the key delivered at launch) or "no TEE" (allowed by the policy)
    trusted_by: str = "evidence"
    verdict: Verdict | None = None

    def describe(self) -> str:
        return (f"{self.version.replace('TLSv', 'TLS ')}, key exchange "
                f"{self.group or 'unknown'}, keep key {self.key_type}")


@dataclass
class DeployTimings:
    """Monotonic instants of one deployment (seconds), for benchmarks."""

    start: float = 0.0
    handshake_done: float = 0.0
    trusted: float = 0.0
    sent: float = 0.0
    first_output: float | None = None
    exit: float = 0.0


def simulated_collateral(technology: str, evidence: bytes = b"") -> Any:
    """The local simulator's collateral for evidence of ``technology`` (a TEE name), or None
    when that TEE's simulator has none to give (SNP: the certificate table travels with
    the report)."""
    tee = registry().get(technology)
    return tee.simulated_collateral(evidence) if tee.simulated_collateral else None


def trusted_sev_arks(trust_simulated: bool) -> list[bytes]:
    """The SEV (legacy) ARKs a tenant accepts: AMD's pinned ones (the package pins none in
    AMD's SEV format today: ``attestcall.amd.roots`` holds the SNP X.509 roots) and, only
    with ``trust_simulated``, the simulator's (the SEV plugin's simulated roots)."""
    arks: list[bytes] = []
    sev = registry().by_id(Technology.SEV)
    if trust_simulated and sev is not None and sev.simulated_roots is not None:
        arks += sev.simulated_roots()
    return arks


def pccs_collateral(base_url: str) -> CollateralProvider:
    """A provider fetching collateral for the evidence from the PCS/PCCS at ``base_url``
    (cached as ``attestcall verify --pccs`` caches it), for the TEEs that take --pccs."""
    return service_collateral("--pccs", base_url)


def service_collateral(option: str, base_url: str) -> CollateralProvider:
    """A provider asking the service at ``base_url`` for the TEEs whose ``verify`` takes
    it as ``option`` (``--pccs``, ``--kds``); None for the others."""

    def provide(technology: str, evidence: bytes) -> Any:
        tee = registry().get(technology)
        if tee.collateral_source is None or tee.collateral_options is None \
                or tee.collateral_options[1] != option:
            return None
        return tee.collateral_source(evidence, None, base_url)

    return provide


def file_collateral(option: str, path: str) -> CollateralProvider:
    """A provider giving the file at ``path`` to the TEEs whose ``verify`` reads it as
    ``option`` (``--collateral``, ``--certs``); None for the others."""

    def provide(technology: str, evidence: bytes) -> Any:
        tee = registry().get(technology)
        if tee.collateral_options is None or tee.collateral_options[0] != option:
            return None
        return Path(path)

    return provide


def first_collateral(*providers: CollateralProvider) -> CollateralProvider | None:
    """The first answer of ``providers`` that is not None (None: no provider at all)."""
    if not providers:
        return None

    def provide(technology: str, evidence: bytes) -> Any:
        for provider in providers:
            found = provider(technology, evidence)
            if found is not None:
                return found
        return None

    return provide


def workload_binary(workload: bytes) -> bytes:
    """The module as a WebAssembly binary (text format is converted). Raises PayloadError."""
    if workload.startswith(b"\0asm"):
        return bytes(workload)
    try:
        return wasmtime.wat2wasm(workload.decode("utf-8"))
    except (UnicodeDecodeError, wasmtime.WasmtimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PayloadError(f"the workload is neither a WebAssembly binary nor valid "
                           f"WebAssembly text: {first}") from None


def appraise_certificate(
    certificate_der: bytes,
    *,
    policy: Policy | None = None,
    trust_simulated: bool = False,
    collateral_for: CollateralProvider | None = None,
    allow_none: bool = False,
    expected_public_key: bytes | None = None,
    key_type: str | None = None,
) -> Verdict | None:
    """Decide on the keep's TLS certificate. Returns the Verdict (None for a pinned SEV key
    or an allowed no-TEE keep); raises DeployRefused with every reason otherwise."""
    try:
        cert = x509.load_der_x509_certificate(certificate_der)
        public_key = cert.public_key()
        actual_type = key_type_of(public_key)  # type: ignore[arg-type]
    except (ValueError, UnsupportedKeyType) as exc:
        raise DeployRefused([f"the keep's certificate is unusable: {exc}"]) from None
    if key_type is not None and actual_type != key_type:
        raise DeployRefused([f"the keep's key is {actual_type}, the tenant requires {key_type}"])
    failure = pki.issued_by(cert, cert)  # self-signed with the key TLS proved the keep holds
    if failure is not None:
        raise DeployRefused([f"the keep's certificate is not validly self-signed with its "
                             f"{actual_type} key: {failure.detail}"])
    if expected_public_key is not None:
        if spki_der(public_key) != expected_public_key:  # type: ignore[arg-type]
            raise DeployRefused(["the keep's TLS key is not the key delivered at launch"])
        return None
    try:
        technology, evidence = evidence_from_certificate(cert)
        check_binding(cert, evidence, technology)
    except IdentityError as exc:
        raise DeployRefused([str(exc)]) from None
    if technology == Technology.NONE:
        if not allow_none:
            raise DeployRefused(["the keep runs outside any TEE (technology 0) and the "
                                 "policy does not allow a no-TEE keep"])
        return None
    tee = registry().by_id(technology)
    if tee is None or not tee.verifiable:
        raise DeployRefused([f"technology {technology} evidence cannot be verified here"])
    collateral = None
    # Without a provider, verify() chooses: a simulated keep's evidence gets the
    # simulators' collateral (refused for being simulated unless trust_simulated), other
    # evidence the TEE's default service (Intel's PCS, AMD's KDS) unless offline.
    provider = collateral_for
    if provider is not None:
        try:
            collateral = provider(tee.name, evidence)
        except (AttestcallError, OSError) as exc:
            raise DeployRefused([f"cannot get {tee.label} collateral: {exc}"]) from None
    try:
        verdict = verify(evidence, technology=tee.name, collateral=collateral,
                         nonce=binding_nonce(public_key),  # type: ignore[arg-type]
                         policy=policy, trust_simulated=trust_simulated)
    except (EvidenceError, CollateralError) as exc:
        raise DeployRefused([str(exc)]) from None
    if not verdict.accepted:
        raise DeployRefused(verdict.reasons, verdict)
    return verdict


def _write(sink: BinaryIO, data: bytes) -> None:
    sink.write(data)
    sink.flush()


def _stream(tls: TlsSocket, stdout: BinaryIO, stderr: BinaryIO,
            timings: DeployTimings) -> int:
    decoder = FrameDecoder(protocol.KEEP_FRAMES)
    while True:
        try:
            data = tls.recv(_RECV_SIZE)
        except OSError as exc:
            raise KeepFailed(f"lost the connection to the keep: {exc}") from None
        try:
            if not data:
                decoder.end()
                raise KeepFailed("the keep closed the connection before the workload's exit")
            frames = decoder.feed(data)
        except ProtocolError as exc:
            raise KeepFailed(f"the keep broke the protocol: {exc}") from None
        for frame in frames:
            try:
                if frame.type == FrameType.OUTPUT:
                    stream, chunk = protocol.parse_output(frame.payload)
                    if timings.first_output is None:
                        timings.first_output = time.monotonic()
                    _write(stdout if stream == protocol.STDOUT else stderr, chunk)
                elif frame.type == FrameType.EXIT:
                    return protocol.parse_exit(frame.payload)
                else:
                    raise KeepFailed(f"the keep refused the workload: "
                                     f"{protocol.parse_error(frame.payload)}")
            except ProtocolError as exc:
                raise KeepFailed(f"the keep broke the protocol: {exc}") from None


def provision_sev(
    keep: tuple[str, int],
    *,
    policy: Policy,
    trust_simulated: bool = False,
    key_type: str | None = None,
    timeout: float = 10.0,
) -> bytes | None:
    """Provision ``keep`` if it is an unprovisioned SEV keep: returns the DER
    SubjectPublicKeyInfo of the key delivered (the TLS key to pin), or None for any other
    keep. Raises DeployRefused (no key sent) or KeepUnreachable."""
    try:
        status, link = provision_tenant.probe(keep, timeout)
    except OSError as exc:
        raise KeepUnreachable(f"cannot connect to the keep at {keep[0]}:{keep[1]}: "
                              f"{exc.strerror or exc}") from None
    if link is None:
        return None
    with link.sock:
        digests = [bytes.fromhex(d) for d in policy.get("sev", "launch_digest", ()) or ()]
        if not digests:
            raise DeployRefused(["the keep is an unprovisioned SEV keep and the policy lists "
                                 "no [sev] launch_digest: the tenant will not deliver a key "
                                 "to a launch it cannot check"])
        arks = trusted_sev_arks(trust_simulated)
        if not arks:
            raise DeployRefused(["no trusted AMD SEV root (ARK): attestcall pins no SEV "
                                 "(legacy) ARK; the simulator's is trusted only with "
                                 "trust_simulated (--trust-simulated)"])
        key = generate_key(key_type or provision_tenant.DEFAULT_SEV_KEY_TYPE)
        reasons = provision_tenant.provision(link, key, digests, arks)
        if reasons:
            raise DeployRefused(reasons)
        public = spki_der(key.public_key())  # type: ignore[arg-type]
        del key  # the tenant keeps only the public key
        return public


def _explain_unprovisioned(keep: tuple[str, int], timeout: float) -> None:
    """After a failed handshake without a [sev] policy: say so if the keep is an
    unprovisioned SEV keep (which closes TLS connections until provisioned)."""
    try:
        status, link = provision_tenant.probe(keep, timeout)
    except OSError:
        return
    if link is not None:
        link.sock.close()
        raise DeployRefused(["the keep is an unprovisioned SEV keep and the policy lists no "
                             "[sev] launch_digest: the tenant will not deliver a key to a "
                             "launch it cannot check"])


def _key_type(certificate_der: bytes) -> str:
    """The key type of a certificate already judged (its class name if not one of ours)."""
    public_key = x509.load_der_x509_certificate(certificate_der).public_key()
    try:
        return key_type_of(public_key)  # type: ignore[arg-type]
    except UnsupportedKeyType:
        return type(public_key).__name__


def _check_by_ca(trust: CaTrust, certificate_der: bytes, policy: Policy, allow_none: bool,
                 key_type: str | None) -> None:
    """Judge the keep's certificate by the service CA (DeployRefused with the reasons)."""
    try:
        trust.check(certificate_der, policy=policy, allow_none=allow_none)
    except Untrusted as exc:
        raise DeployRefused(exc.reasons) from None
    if key_type is not None:
        public_key = x509.load_der_x509_certificate(certificate_der).public_key()
        try:
            actual = key_type_of(public_key)  # type: ignore[arg-type]
        except UnsupportedKeyType as exc:
            raise DeployRefused([f"the keep's certificate is unusable: {exc}"]) from None
        if actual != key_type:
            raise DeployRefused([f"the keep's key is {actual}, the tenant requires {key_type}"])


def deploy(
    keep: tuple[str, int],
    workload: bytes,
    args: Sequence[str],
    *,
    policy: Policy | Any = None,
    trust_simulated: bool = False,
    collateral_for: CollateralProvider | None = None,
    stdout: BinaryIO | None = None,
    stderr: BinaryIO | None = None,
    allow_none: bool = False,
    expected_public_key: bytes | None = None,
    key_type: str | None = None,
    connect_timeout: float = 10.0,
    output_timeout: float | None = None,
    timings: DeployTimings | None = None,
    ca: CaTrust | Any = None,
    service_ca: str | None = None,
    on_trusted: Callable[[KeepConnection], None] | None = None,
    groups: Sequence[str] | None = None,
) -> int:
    """Deploy ``workload`` (Wasm binary or text) with ``args`` to the keep at ``keep`` and
    return its exit status, its output written to ``stdout``/``stderr`` (binary streams,
    default this process's) as it arrives.

    ``policy``: a Policy, mapping or TOML path (``attestcall.verify``'s); ``allow_none``: a
    no-TEE keep is acceptable (also when the policy has ``[none] allow = true``);
    ``key_type``: the keep's key must be of this type; ``ca``: a CaTrust or the service CA
    certificate (a PEM/DER path, bytes or certificate) to judge the keep by instead of its
    evidence, with ``service_ca`` (a PEM file) the only CA trusted for an https CRL
    distribution point (default: the system's trust store); ``on_trusted`` is told the
    :class:`KeepConnection` once the keep is trusted, before anything is sent; ``groups``:
    the key-exchange groups to offer (default :data:`attestcall.tls.GROUPS`). Raises
    DeployRefused (nothing sent), KeepUnreachable, KeepFailed, PolicyError, PayloadError,
    CaTrustError."""
    timings = timings if timings is not None else DeployTimings()
    timings.start = time.monotonic()
    stdout = stdout if stdout is not None else sys.stdout.buffer
    stderr = stderr if stderr is not None else sys.stderr.buffer
    rules = Policy.load(policy)
    allow_none = allow_none or bool(rules.get("none", "allow", False))  # [none] allow = true
    frames = list(protocol.workload_frames(workload_binary(workload), args))
    trust = (ca if ca is None or isinstance(ca, CaTrust)
             else CaTrust(ca, service_ca=service_ca))
    wants_sev = trust is None and bool(rules.get("sev", "launch_digest", ()))
    if expected_public_key is None and wants_sev:
        expected_public_key = provision_sev(keep, policy=rules,
                                            trust_simulated=trust_simulated,
                                            key_type=key_type, timeout=connect_timeout)
    try:
        raw = socket.create_connection(keep, timeout=connect_timeout)
    except OSError as exc:
        raise KeepUnreachable(f"cannot connect to the keep at {keep[0]}:{keep[1]}: "
                              f"{exc.strerror or exc}") from None
    with raw:
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            context = client_context(groups=groups) if groups else client_context()
            tls = TlsSocket.connect(context, raw, connect_timeout)
        except OSError as exc:  # TlsError, TimeoutError, a reset
            if isinstance(exc, TimeoutError):
                raise KeepTimedOut(
                    f"the keep at {keep[0]}:{keep[1]} accepted the connection but did not "
                    f"finish the TLS handshake within {connect_timeout:g} s (timed out: busy, "
                    "overloaded, or not a keep); nothing was sent") from None
            if trust is None and expected_public_key is None and not wants_sev:
                _explain_unprovisioned(keep, connect_timeout)
            reason = exc.reason if isinstance(exc, TlsError) else (exc.strerror or str(exc))
            offered = ", ".join(groups or GROUPS)
            raise DeployRefused([f"the TLS handshake with the keep failed: {reason} (this "
                                 f"tenant offers TLS 1.3 with key exchange {offered})"]) \
                from None
        with tls:
            timings.handshake_done = time.monotonic()
            certificate = tls.peer_certificate_der()
            if tls.version != "TLSv1.3" or not certificate:
                raise DeployRefused(["the keep did not present a certificate over TLS 1.3"])
            verdict = None
            if trust is not None:
                _check_by_ca(trust, certificate, rules, allow_none, key_type)
            else:
                verdict = appraise_certificate(
                    certificate, policy=rules, trust_simulated=trust_simulated,
                    collateral_for=collateral_for, allow_none=allow_none,
                    expected_public_key=expected_public_key, key_type=key_type,
                )
            timings.trusted = time.monotonic()
            if on_trusted is not None:
                by = ("ca" if trust is not None else "evidence" if verdict is not None
                      else "launch key" if expected_public_key is not None else "no TEE")
                on_trusted(KeepConnection(keep, tls.version, tls.group,
                                          _key_type(certificate), by, verdict))
            tls.settimeout(output_timeout)
            try:
                tls.sendall(protocol.hello())
                for frame in frames:
                    tls.sendall(frame)
            except OSError as exc:
                raise KeepFailed(f"lost the connection to the keep while sending: {exc}") \
                    from None
            timings.sent = time.monotonic()
            status = _stream(tls, stdout, stderr, timings)
            timings.exit = time.monotonic()
            return status
