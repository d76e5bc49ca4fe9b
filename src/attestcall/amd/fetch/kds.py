"""Fetching an SEV-SNP report's VCEK and its ASK/ARK from an AMD KDS-compatible service.

::

    GET {base}/vcek/v1/{product}/{hwid}?blSPL=..&teeSPL=..&snpSPL=..&ucodeSPL=..[&fmcSPL=..]
        body: the VCEK (DER; PEM accepted)
    GET {base}/vcek/v1/{product}/cert_chain
        body: PEM, the ASK then the ARK
    GET {base}/{vcek,vlek}/v1/{product}/crl
        body: the ARK's CRL (DER)

The path comes from :func:`vcek_path` (hwid = CHIP_ID, its first 8 bytes on Turin; the
SPLs from REPORTED_TCB). A version 2 report does not tell Milan from Genoa: unless
``product`` is given, Milan is asked first and Genoa on a 404.

:class:`KdsSource` is the certificate source the SNP verifier asks as it goes
(:mod:`attestcall.amd.fetch.source`); :func:`fetch_vcek` fetches everything at once into a PEM
bundle VCEK, ASK, ARK, usable as ``attestcall verify --certs``. Each answer is cached by
URL until its certificates' earliest notAfter. Nothing is trusted here: the verifier
checks the chain against its pinned ARKs and the VCEK against the report.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from attestcall import fetch
from attestcall.amd.fetch.source import VcekRequest
from attestcall.amd.formats import report as snp
from attestcall.amd.formats.certs import load_certificate, load_pem_certificates
from attestcall.amd.formats.crl import load_crl
from attestcall.amd.roots import amd_arks, amd_asks
from attestcall.diskcache import Cache
from attestcall.errors import AttestcallError, CollateralError, EvidenceError

AMD_KDS_URL = "https://kdsintf.amd.com"
REPORT_SIZE = snp.REPORT_SIZE
_GUESSES = ("Milan", "Genoa")  # what a report that cannot tell may be, in order
NOT_VCEK_SIGNED = ("the report is not signed by a VCEK (a VLEK or no key): KDS cannot serve "
                   "its key; give the certificates with --certs")


def service_root(base_url: str) -> str:
    """``base_url`` without a trailing slash or ``/vcek/v1``."""
    root = base_url.strip().rstrip("/")
    if root.endswith("/vcek/v1"):
        root = root[: -len("/vcek/v1")]
    fetch.check_url(root)
    return root


def vcek_path(request: VcekRequest, product: str | None = None) -> str:
    """The KDS path of a VCEK:
    ``/vcek/v1/{product}/{hwid}?blSPL=..&teeSPL=..&snpSPL=..&ucodeSPL=..`` (plus
    ``&fmcSPL=..`` and an 8-byte hwid on Turin). ``product`` defaults to what the report
    reveals; :class:`EvidenceError` if it cannot tell, or if CHIP_ID is masked."""
    product = product or request.product
    if product not in snp.PRODUCTS:
        raise EvidenceError("cannot tell the product line (Milan or Genoa) from this report; "
                            "name it")
    if request.chip_id_masked or not any(request.chip_id):
        raise EvidenceError("the report's CHIP_ID is masked: KDS cannot serve its VCEK")
    tcb = request.tcb(product)
    path = (f"/vcek/v1/{product}/{request.hwid(product).hex()}?blSPL={tcb.bootloader:02d}"
            f"&teeSPL={tcb.tee:02d}&snpSPL={tcb.snp:02d}&ucodeSPL={tcb.microcode:02d}")
    if tcb.fmc is not None:
        path += f"&fmcSPL={tcb.fmc:02d}"
    return path


def request_paths(request: VcekRequest, product: str | None = None) -> list[str]:
    """The KDS paths that may hold the requested VCEK (one, unless the report cannot tell
    its product line); :class:`CollateralError` if there are none."""
    try:
        if product is not None:
            return [vcek_path(request, product)]
        if request.product is not None:
            return [vcek_path(request)]
        return [vcek_path(request, guess) for guess in _GUESSES]
    except AttestcallError as exc:
        raise CollateralError(f"cannot tell which VCEK to fetch: {exc}") from exc


def vcek_paths(evidence: bytes, product: str | None = None) -> list[str]:
    """The KDS paths that may hold the VCEK of the report at the start of ``evidence``
    (one, unless the report cannot tell its product line)."""
    if len(evidence) < REPORT_SIZE:
        raise CollateralError(
            f"an SEV-SNP report is {REPORT_SIZE} bytes; the evidence has {len(evidence)}"
        )
    try:
        report = snp.parse(bytes(evidence[:REPORT_SIZE]))
    except AttestcallError as exc:
        raise CollateralError(f"cannot tell which VCEK to fetch: {exc}") from exc
    if report.signing_key != snp.SIGNING_KEY_VCEK:
        raise CollateralError(NOT_VCEK_SIGNED)
    return request_paths(VcekRequest.from_report(report), product)


def _product_of(path: str) -> str:
    return path.split("/")[3]  # /vcek/v1/{product}/...


def fetch_vcek(
    base_url: str,
    evidence: bytes,
    *,
    cache: Cache | None = None,
    product: str | None = None,
    timeout: float = fetch.DEFAULT_TIMEOUT,
) -> bytes:
    """The PEM bundle VCEK + ASK + ARK for the SEV-SNP report that starts ``evidence``,
    from the KDS at ``base_url`` (e.g. https://kdsintf.amd.com); CollateralError if it
    cannot be had. ``cache`` defaults to :class:`Cache` in the user's cache directory."""
    root = service_root(base_url)
    cache = cache if cache is not None else Cache()
    vcek, found = _find_vcek(root, vcek_paths(evidence, product), cache, timeout)
    chain = _cert_chain(f"{root}/vcek/v1/{found}/cert_chain", cache, timeout)
    return b"".join(cert.public_bytes(Encoding.PEM) for cert in (vcek, *chain))


def _find_vcek(root: str, paths: list[str], cache: Cache,
               timeout: float) -> tuple[x509.Certificate, str]:
    """The first VCEK found at ``paths`` and the product line of its path."""
    misses: list[str] = []
    for path in paths:
        url = root + path
        try:
            return _vcek(url, cache, timeout), _product_of(path)
        except _NotFound:
            misses.append(url)
    raise CollateralError(f"{' and '.join(misses)}: HTTP 404 (no such VCEK)")


def collateral_bundle(evidence: bytes, base_url: str | None, *,
                      cache: Cache | None = None,
                      timeout: float = fetch.DEFAULT_TIMEOUT) -> bytes:
    """What verifying the SEV-SNP ``evidence`` needs, as one PEM file (``--certs`` reads
    it): the VCEK or VLEK, the ASK or ASVK and the ARK — from the evidence's certificate
    table when it has them, else the VCEK and chain from the KDS at ``base_url`` — then
    the ARK's CRL from that KDS (for AMD's own ARKs). ``base_url`` None: nothing is
    fetched (a table without the key, or a pinned ARK without its CRL, is then an
    error)."""
    from attestcall.amd.fetch.source import TableSource
    from attestcall.amd.formats.certs import classify

    if len(evidence) < REPORT_SIZE:
        raise CollateralError(f"an SEV-SNP report is {REPORT_SIZE} bytes; the evidence has "
                              f"{len(evidence)}")
    try:
        report = snp.parse(bytes(evidence[:REPORT_SIZE]))
        table = TableSource.from_evidence(evidence)
    except AttestcallError as exc:
        raise CollateralError(f"cannot read the evidence: {exc}") from exc
    vlek = report.signing_key == snp.SIGNING_KEY_VLEK
    found = [*table.vleks(), *table.signing_cas(None), *table.arks(None)] if vlek else \
        [*table.vceks(None), *table.signing_cas(None), *table.arks(None)]  # type: ignore[arg-type]
    cache = cache if cache is not None else Cache()
    if not (table.vleks() if vlek else table.vceks(None)):  # type: ignore[arg-type]
        if vlek:
            raise CollateralError("the report is signed by a VLEK and its certificate table "
                                  "has none: KDS serves no VLEK; ask the cloud provider")
        if base_url is None:
            raise CollateralError("the report has no VCEK in a certificate table, and nothing "
                                  "may be fetched (--offline)")
        root = service_root(base_url)
        vcek, product = _find_vcek(root, vcek_paths(evidence), cache, timeout)
        found = [vcek, *_cert_chain(f"{root}/vcek/v1/{product}/cert_chain", cache, timeout)]
    by_role = classify(found)
    vek = (by_role.vleks if vlek else by_role.vceks)[0]
    ask = next((c for c in [*by_role.intermediates, *amd_asks()] if c.subject == vek.issuer),
               None)
    ark = None if ask is None else next(
        (c for c in [*by_role.roots, *amd_arks()] if c.subject == ask.issuer), None)
    certs = [c for c in (vek, ask, ark) if c is not None]
    body = b"".join(cert.public_bytes(Encoding.PEM) for cert in certs)
    if ark is not None and ark in amd_arks():
        if base_url is None:
            raise CollateralError("the ARK's CRL comes from KDS, and nothing may be fetched "
                                  "(--offline)")
        product = _ark_product(ark)
        family = "vlek" if vlek else "vcek"
        crl = crl_at(f"{service_root(base_url)}/{family}/v1/{product}/crl", cache, timeout)
        body += crl.public_bytes(Encoding.PEM)
    return body


def _ark_product(ark: x509.Certificate) -> str:
    name = ark.subject.rfc4514_string()
    for product in snp.PRODUCTS:
        if f"ARK-{product}" in name:
            return product
    raise CollateralError(f"cannot tell the product line of the ARK {name}")


class KdsSource:
    """AMD certificates from an AMD KDS-compatible service at ``base_url`` (a
    :class:`~attestcall.amd.fetch.source.CertSource`), each answer kept in the disk ``cache``
    (default: the user's cache directory) until its certificates expire. Holds no other
    state: one source may serve many appraisals, in any thread.

    KDS serves VCEKs (by chip id and TCB) and each product line's ASK and ARK
    (``cert_chain``); it does not serve VLEKs, so asking for one raises
    :class:`CollateralError`. Asked for the chain of no known product line, it has none."""

    def __init__(self, base_url: str, *, cache: Cache | None = None,
                 timeout: float = fetch.DEFAULT_TIMEOUT) -> None:
        self.root = service_root(base_url)
        self.cache = cache if cache is not None else Cache()
        self.timeout = timeout

    def vceks(self, request: VcekRequest) -> Sequence[x509.Certificate]:
        vcek, _ = _find_vcek(self.root, request_paths(request), self.cache, self.timeout)
        return [vcek]

    def vleks(self) -> Sequence[x509.Certificate]:
        raise CollateralError(NOT_VCEK_SIGNED)

    def _chain(self, product: str | None) -> list[x509.Certificate]:
        if product not in snp.PRODUCTS:
            return []
        return _cert_chain(f"{self.root}/vcek/v1/{product}/cert_chain", self.cache,
                           self.timeout)

    def signing_cas(self, product: str | None) -> Sequence[x509.Certificate]:
        return self._chain(product)[:1]

    def arks(self, product: str | None) -> Sequence[x509.Certificate]:
        return self._chain(product)[1:]

    revocation_required = True

    def crls(self, family: str, product: str | None,
             ark: x509.Certificate) -> Sequence[x509.CertificateRevocationList]:
        """The CRL KDS publishes for ``family`` ("vcek" or "vlek") and ``product``, when
        ``ark`` is one of AMD's (KDS has none for another ARK, e.g. a simulated one)."""
        if product not in snp.PRODUCTS or ark not in amd_arks():
            return []
        return [crl_at(f"{self.root}/{family}/v1/{product}/crl", self.cache, self.timeout)]


class KdsRevocation:
    """Only the ARK's CRL from an AMD KDS-compatible service at ``base_url``, for a report
    whose certificate table carries its key and chain (a
    :class:`~attestcall.amd.fetch.source.CertSource` that gives no certificate). The CRL
    must then be had: a KDS that cannot give it is an error, not an unchecked chain."""

    revocation_required = True

    def __init__(self, base_url: str, *, cache: Cache | None = None,
                 timeout: float = fetch.DEFAULT_TIMEOUT) -> None:
        self.kds = KdsSource(base_url, cache=cache, timeout=timeout)

    def vceks(self, request: VcekRequest) -> Sequence[x509.Certificate]:
        return []

    def vleks(self) -> Sequence[x509.Certificate]:
        return []

    def signing_cas(self, product: str | None) -> Sequence[x509.Certificate]:
        return []

    def arks(self, product: str | None) -> Sequence[x509.Certificate]:
        return []

    def crls(self, family: str, product: str | None,
             ark: x509.Certificate) -> Sequence[x509.CertificateRevocationList]:
        return self.kds.crls(family, product, ark)


class _NotFound(Exception):
    """KDS has no VCEK at this path (HTTP 404): try the next product line."""


def _vcek(url: str, cache: Cache, timeout: float) -> x509.Certificate:
    data = cache.get(url)
    if data is not None:
        try:
            return _load_vcek(data, url)
        except CollateralError:
            pass  # a corrupt entry: fetch again
    try:
        answer = fetch.get_retrying(url, timeout=timeout)
    except fetch.HttpStatusError as exc:
        if exc.status == 404:
            raise _NotFound from None
        raise
    vcek = _load_vcek(answer.body, url)
    cache.put(url, answer.body, vcek.not_valid_after_utc)
    return vcek


def _load_vcek(data: bytes, url: str) -> x509.Certificate:
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            certificates = load_pem_certificates(data)
            if len(certificates) != 1:
                raise CollateralError(f"{len(certificates)} certificates, not one")
            return certificates[0]
        return load_certificate(data)
    except CollateralError as exc:
        raise CollateralError(f"{url}: the answer is not a VCEK certificate ({exc})") from None


def _cert_chain(url: str, cache: Cache, timeout: float) -> list[x509.Certificate]:
    data = cache.get(url)
    if data is not None:
        try:
            return _load_chain(data, url)
        except CollateralError:
            pass
    answer = fetch.get_retrying(url, timeout=timeout)
    chain = _load_chain(answer.body, url)
    cache.put(url, answer.body, expiry(chain))
    return chain


def crl_at(url: str, cache: Cache, timeout: float) -> x509.CertificateRevocationList:
    """The CRL at ``url`` (DER or PEM), kept in ``cache`` until its nextUpdate."""
    data = cache.get(url)
    if data is not None:
        try:
            return load_crl(data)
        except CollateralError:
            pass  # a corrupt entry: fetch again
    answer = fetch.get_retrying(url, timeout=timeout)
    try:
        crl = load_crl(answer.body)
    except CollateralError as exc:
        raise CollateralError(f"{url}: the answer is not a CRL ({exc})") from None
    if crl.next_update_utc is not None:
        cache.put(url, crl.public_bytes(Encoding.DER), crl.next_update_utc)
    return crl


def _load_chain(data: bytes, url: str) -> list[x509.Certificate]:
    """The ASK (or ASVK) and ARK of a cert_chain answer, in that order."""
    try:
        chain = load_pem_certificates(data)
    except CollateralError:
        raise CollateralError(f"{url}: the answer is not PEM certificates") from None
    if len(chain) != 2:
        raise CollateralError(f"{url}: expected the ASK and the ARK, got {len(chain)} certificates")
    ask, ark = chain
    if ark.subject != ark.issuer or ask.issuer != ark.subject:
        raise CollateralError(f"{url}: the certificates are not an ASK followed by its ARK")
    return chain


def expiry(certificates: list[x509.Certificate]) -> dt.datetime:
    """When the earliest of ``certificates`` expires."""
    return min(cert.not_valid_after_utc for cert in certificates)
