"""``deploy --ca``: trust a keep because the attestation service vouched for it.

Instead of verifying the keep's evidence itself, the tenant checks the certificate the
attestation service issued to the keep (docs/design.md section 10), then applies its own
policy to the result that certificate carries. :meth:`CaTrust.check` refuses unless:

1. the keep's TLS leaf certificate is issued *directly* by the CA (names and signature,
   :func:`attestcall.pki.issued_by`); the service signs keep certificates with its CA key,
   no intermediate is accepted;
2. the leaf is within its validity now and has the serverAuth extended key usage;
3. the leaf is not revoked: the CRL at the leaf's CRL distribution point is fetched with a
   bounded HTTP GET (:mod:`attestcall.fetch`), its signature verified with the CA's key
   (:func:`attestcall.pki.crl_issued_by`), and it must be current (thisUpdate <= now <
   nextUpdate). A verified CRL is cached in memory and on disk (:mod:`attestcall.diskcache`)
   until its nextUpdate. An unreachable, unsigned, foreign or stale CRL refuses the keep.
   The distribution point is followed as the service wrote it: plain http is fine (the CRL
   is signed by the CA, which is what is trusted, as RFC 5280 intends), and https
   (attestcall's TLS 1.3, X25519MLKEM768 first) is verified like any HTTPS, against the
   system's trust store or the one CA given as ``service_ca`` (``deploy --service-ca``,
   the same file ``keep serve --service-ca`` takes), so that a private service need not
   be in the system's store;
4. the certificate carries an attestation result (:mod:`attestcall.service.result`: the
   service's EAR claims-set, the vocabulary of its tokens and of ``verify --ear``) that the
   tenant's policy accepts (:func:`check_result`).

What the tenant's policy is checked against: the technology, its launch measurement
(MRENCLAVE, MRTD, SNP MEASUREMENT: each record's ``measurement_claim``), the TCB status and the
advisories. Every other claim (MRSIGNER, ISV SVN, RTMRs, SNP's reported TCB, VMPL, host
data, SMT, ...) is not: a policy that constrains one is refused with a reason saying so,
rather than silently ignored; ``allow_debug`` is not checked (whether debug was allowed was
the service's policy's decision; the EAR's ``runtime-opaque`` claim says whether the keep is
a debug one, for a tenant that reads it).
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID
from OpenSSL import SSL

from attestcall import diskcache, fetch, pki, tls
from attestcall.abi import Technology
from attestcall.ear import constrains
from attestcall.errors import AttestcallError, CollateralError
from attestcall.service.result import (
    AttestationResult,
    MalformedResult,
    from_certificate,
)
from attestcall.tees import registry
from attestcall.verifier.policy import Policy

CRL_TIMEOUT = 10.0  # seconds, for the whole CRL download
CRL_MAX_SIZE = 4 * 1024 * 1024  # bytes
# Policy keys a result answers (the measurement key is added per technology).
RESULT_KEYS = ("accept_tcb_status", "refuse_advisories")
IGNORED_KEYS = ("allow_debug",)  # not knowable from a result: the service's decision

_MEMORY: dict[tuple[bytes, str], x509.CertificateRevocationList] = {}
_MEMORY_LOCK = threading.Lock()


class CaTrustError(AttestcallError):
    """The CA file cannot be used."""


class Untrusted(AttestcallError):
    """The keep's certificate does not lead to the CA or its result is refused."""

    def __init__(self, reasons: list[str]):
        self.reasons = reasons
        super().__init__("; ".join(reasons))


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def load_ca(source: str | Path | bytes | x509.Certificate) -> x509.Certificate:
    """The CA certificate from a PEM (or DER) file path, bytes, or a certificate."""
    if isinstance(source, x509.Certificate):
        return source
    if isinstance(source, bytes):
        data = source
    else:
        try:
            data = Path(source).read_bytes()
        except OSError as exc:
            raise CaTrustError(f"cannot read the CA certificate {source}: "
                               f"{exc.strerror or exc}") from None
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError:
        raise CaTrustError(f"{source if not isinstance(source, bytes) else 'the CA'} is not "
                           f"a PEM or DER certificate") from None


@dataclass(frozen=True)
class _ResultClaims:
    """The part of an Appraisal a result honestly fills in, for the plugin's policy check.
    It has no ``debug``: a result does not say."""

    technology: str
    claims: dict[str, Any]
    tcb_status: str | None
    advisories: list[str] = field(default_factory=list)


def check_result(result: AttestationResult | None, policy: Policy, *,
                 allow_none: bool = False) -> list[str]:
    """Every reason the tenant's ``policy`` refuses the service's ``result``; empty when it
    accepts. See the module docstring for what a result can and cannot tell."""
    if result is None:
        return ["the keep's certificate carries no attestation result"]
    tee = registry().by_id(result.technology)
    if tee is None or tee.name != result.technology_name:
        return [f"the attestation result names technology {result.technology} "
                f"({result.technology_name!r}), which this tenant does not know as such"]
    if result.technology == Technology.NONE:
        if allow_none or policy.allows_none():
            return []
        return ["the keep runs outside any TEE (technology 0) and the policy does not "
                "allow a no-TEE keep"]
    claim = tee.measurement_claim
    if not claim:
        return [f"a {tee.label} attestation result carries no measurement to check"]
    table = policy.tables.get(tee.name, {})
    answered = (claim, *RESULT_KEYS)
    reasons = [
        f"the policy's [{tee.name}] {key} cannot be checked against the service's "
        f"certificate (its result carries only the technology, the {claim}, the TCB status "
        f"and the advisories)"
        for key, value in table.items()
        if key not in answered and key not in IGNORED_KEYS and constrains(value)
    ]
    schema = tee.policy.schema if tee.policy is not None else {}
    if "accept_tcb_status" in schema and not result.tcb_status:
        reasons.append(f"the {tee.label} attestation result carries no TCB status")
    if tee.policy is not None and tee.policy.check is not None:
        try:
            measurement = result.measurement.hex()
        except MalformedResult as exc:
            return [*reasons, str(exc)]
        claims = _ResultClaims(tee.name, {claim: measurement},
                               result.tcb_status or None, list(result.advisories))
        reasons += tee.policy.check({k: v for k, v in table.items() if k in answered}, claims)
    return reasons


class CaTrust:
    """A service CA the tenant trusts, and the CRLs of its keeps' certificates.

    ``cache``: the disk cache for verified CRLs (default: the user's collateral cache);
    ``clock``: "now" (timezone-aware), injected by tests; ``service_ca``: the only CA
    trusted for an https distribution point (default: the system's trust store)."""

    def __init__(
        self,
        ca: str | Path | bytes | x509.Certificate,
        *,
        cache: diskcache.Cache | None = None,
        clock: Callable[[], dt.datetime] = _utc_now,
        crl_timeout: float = CRL_TIMEOUT,
        service_ca: str | Path | None = None,
    ) -> None:
        self.ca = load_ca(ca)
        self.https: SSL.Context = tls.verifying_client_context(service_ca)
        self.cache = cache if cache is not None else diskcache.Cache()
        self.clock = clock
        self.crl_timeout = crl_timeout
        self._fingerprint = self.ca.fingerprint(hashes.SHA256())

    def check(self, leaf_der: bytes, *, policy: Policy | None = None,
              allow_none: bool = False) -> AttestationResult:
        """The result of the keep's leaf certificate ``leaf_der`` if it leads to the CA, is
        valid now, not revoked, and its result is accepted by ``policy``; Untrusted with
        every reason otherwise."""
        try:
            leaf = pki.load_der_certificate(leaf_der)
        except ValueError as exc:
            raise Untrusted([f"the keep's certificate is unusable: {exc}"]) from None
        failure = pki.issued_by(leaf, self.ca)
        if failure is not None:
            raise Untrusted([f"the keep's certificate is not issued by the trusted CA "
                             f"({failure.fault.value}: {failure.detail})"])
        now = self.clock()
        reasons: list[str] = []
        timing = pki.cert_window(leaf).timing(now)
        if timing is not pki.Timing.VALID:
            reasons.append(f"the keep's certificate is {timing.value} (valid "
                           f"{leaf.not_valid_before_utc:%Y-%m-%d %H:%M:%S} to "
                           f"{leaf.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC)")
        if not _server_auth(leaf):
            reasons.append("the keep's certificate is not for TLS servers (no serverAuth "
                           "extended key usage)")
        reasons += self._revocation(leaf, now)
        if reasons:
            raise Untrusted(reasons)
        try:
            result = from_certificate(leaf)
        except MalformedResult as exc:
            raise Untrusted([str(exc)]) from None
        reasons = check_result(result, policy or Policy(), allow_none=allow_none)
        if reasons:
            raise Untrusted(reasons)
        assert result is not None
        return result

    # ------------------------------------------------------------------ revocation

    def _revocation(self, leaf: x509.Certificate, now: dt.datetime) -> list[str]:
        """Why the leaf cannot be shown unrevoked (empty when the CA's CRL does not list it)."""
        urls = _crl_urls(leaf)
        if not urls:
            return ["the keep's certificate names no CRL distribution point: its revocation "
                    "cannot be checked"]
        problems: list[str] = []
        for url in urls:  # the first usable distribution point decides
            try:
                crl = self._crl(url, now)
            except Untrusted as exc:
                problems += exc.reasons
                continue
            if pki.revoked(crl, leaf.serial_number):
                return [f"the keep's certificate (serial {leaf.serial_number:x}) is revoked "
                        f"(CRL {url})"]
            return []
        return problems

    def _crl(self, url: str, now: dt.datetime) -> x509.CertificateRevocationList:
        """The CA's current CRL from ``url``: from memory, the disk cache or the network."""
        key = (self._fingerprint, url)
        with _MEMORY_LOCK:
            crl = _MEMORY.get(key)
        if crl is not None and pki.crl_window(crl).timing(now) is pki.Timing.VALID:
            return crl
        cache_key = f"service-crl:{self._fingerprint.hex()}:{url}"
        cached = self.cache.get(cache_key)
        if cached is not None:
            try:
                crl = self._verified(x509.load_der_x509_crl(cached), url, now)
            except (ValueError, Untrusted):
                crl = None
            if crl is not None:
                with _MEMORY_LOCK:
                    _MEMORY[key] = crl
                return crl
        try:
            body = fetch.get(url, timeout=self.crl_timeout, max_size=CRL_MAX_SIZE,
                             tls=self.https).body
        except CollateralError as exc:
            raise Untrusted([f"cannot get the CA's CRL, so revocation cannot be checked: "
                             f"{exc}"]) from None
        try:
            crl = x509.load_der_x509_crl(body)
        except ValueError:
            raise Untrusted([f"the CRL at {url} is not a DER CRL"]) from None
        crl = self._verified(crl, url, now)
        next_update = crl.next_update_utc
        if next_update is not None:
            self.cache.put(cache_key, body, next_update)
            with _MEMORY_LOCK:
                _MEMORY[key] = crl
        return crl

    def _verified(self, crl: x509.CertificateRevocationList, url: str,
                  now: dt.datetime) -> x509.CertificateRevocationList:
        failure = pki.crl_issued_by(crl, self.ca)
        if failure is not None:
            raise Untrusted([f"the CRL at {url} is not the trusted CA's "
                             f"({failure.fault.value}: {failure.detail})"])
        timing = pki.crl_window(crl).timing(now)
        if timing is not pki.Timing.VALID:
            word = "stale" if timing is pki.Timing.LATE else "not yet valid"
            raise Untrusted([f"the CRL at {url} is {word} (this update "
                             f"{crl.last_update_utc:%Y-%m-%d %H:%M:%S}, next update "
                             f"{crl.next_update_utc or 'none'}): revocation cannot be "
                             f"checked"])
        return crl


def _server_auth(cert: x509.Certificate) -> bool:
    try:
        usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except (x509.ExtensionNotFound, ValueError):
        return False
    return ExtendedKeyUsageOID.SERVER_AUTH in usage


def _crl_urls(cert: x509.Certificate) -> list[str]:
    """The http(s) URLs of the certificate's CRL distribution points."""
    try:
        points = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    except (x509.ExtensionNotFound, ValueError):
        return []
    urls = []
    for point in points:
        for name in point.full_name or ():
            if isinstance(name, x509.UniformResourceIdentifier) \
                    and name.value.lower().startswith(("http://", "https://")):
                urls.append(name.value)
    return urls
