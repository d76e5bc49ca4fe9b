"""Time the X.509 checks of a cold Intel verification two ways, in the same run.

Run as ``python bench/bench_x509.py``. On each vector's collateral and PCK chain (SGX v3:
small CRLs; TDX v4: a PCK CRL of 44 entries, whose tbsCertList cryptography serialises
again for every ``is_signature_valid``):

- pki: :mod:`attestcall.pki` (``verify_directly_issued_by`` for the three certificate
  links, issuer name + ``is_signature_valid`` for the two CRLs), on certificates and CRLs
  already loaded;
- sliced: the hand-sliced DER path attestcall used before (the tbsCertificate /
  tbsCertList and signature cut out of the exact DER once, issuer names compared as DER
  slices, then one ``EllipticCurvePublicKey.verify`` per signature with a cached key).

Both do the same ECDSA verifications; the difference is what surrounds them. The ratio
pki / sliced must stay at or below TARGET for the hand-sliced path to stay out of
``src/`` (MISSED is printed otherwise).
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from attestcall import der, pki
from attestcall.intel.formats.collateral import Collateral
from attestcall.intel.formats.quote import Quote
from attestcall.intel.formats.tdx_quote import DcapQuote

DATA = Path(__file__).resolve().parent.parent / "tests" / "data" / "intel"
TARGET = 1.25  # pki / sliced, for a cold verification's X.509 work
ROUNDS = 21
PER_ROUND = 100
_ECDSA = ec.ECDSA(hashes.SHA256())


def _slices(data: bytes) -> tuple[bytes, bytes, bytes]:
    """(tbs, signature, issuer name) of a certificate or CRL, cut from its DER."""
    _, start, end = der.header(data)
    tbs, _algorithm, bits = der.spans(data, start, end)
    fields = der.spans(data, tbs[2], tbs[3])
    if fields[0][0] == 0xA0:  # a certificate: [0] version, serial, algorithm, issuer
        issuer = fields[3]
    else:  # a CRL: (version,) algorithm, issuer
        issuer = fields[2] if fields[0][0] == der.INTEGER else fields[1]
    return data[tbs[1] : tbs[3]], data[bits[2] + 1 : bits[3]], data[issuer[1] : issuer[3]]


def _subject(data: bytes) -> bytes:
    _, start, end = der.header(data)
    tbs = der.spans(data, start, end)[0]
    fields = der.spans(data, tbs[2], tbs[3])
    subject = fields[5]  # [0] version, serial, algorithm, issuer, validity, subject
    return data[subject[1] : subject[3]]


def workload(name: str) -> list[tuple[str, Callable[[], None], Callable[[], None]]]:
    collateral = Collateral.load(DATA / f"{name}.collateral.json")
    raw = (DATA / f"{name}.bin").read_bytes()
    if raw[:2] == b"\x03\x00":
        pem = Quote.parse(raw).signature_data.qe.certification_data.data
    else:
        pem = DcapQuote.parse(raw).certification_data.data
    pem = pem.rstrip(b"\x00")
    pck, pck_ca, root = x509.load_pem_x509_certificates(pem)[:3]
    signing = collateral.tcb_info_issuer_chain[0]
    links = [(pck, pck_ca), (pck_ca, root), (signing, root)]
    pck_crl_issuer = collateral.pck_crl_issuer_chain[0]
    crls = [(collateral.root_ca_crl, root), (collateral.pck_crl, pck_crl_issuer)]

    def key(cert: x509.Certificate) -> ec.EllipticCurvePublicKey:
        public = cert.public_key()
        assert isinstance(public, ec.EllipticCurvePublicKey)
        return public

    prepared = []  # what a parse cache would hold: slices, the issuer's subject and key
    for signed, issuer_cert in [*links, *crls]:
        tbs, signature, issuer = _slices(signed.public_bytes(Encoding.DER))
        subject = _subject(issuer_cert.public_bytes(Encoding.DER))
        prepared.append((tbs, signature, issuer, subject, key(issuer_cert)))

    def sliced(items: list[tuple[bytes, bytes, bytes, bytes, ec.EllipticCurvePublicKey]]) -> None:
        for tbs, signature, issuer, subject, public in items:
            assert issuer == subject
            public.verify(signature, tbs, _ECDSA)

    def pki_links() -> None:
        for child, parent in links:
            assert pki.issued_by(child, parent) is None

    def pki_crls() -> None:
        for crl, issuer in crls:
            assert pki.crl_issued_by(crl, issuer) is None

    def pki_crl_signatures() -> None:  # names compared by the caller, as Intel does
        for (crl, issuer), item in zip(crls, prepared[3:], strict=True):
            assert item[2] == item[3]
            assert pki.crl_signed_by(crl, issuer) is None

    return [
        ("3 certificate links", pki_links, lambda: sliced(prepared[:3])),
        ("2 CRLs, names by cryptography", pki_crls, lambda: sliced(prepared[3:])),
        ("2 CRLs, names as kept DER", pki_crl_signatures, lambda: sliced(prepared[3:])),
    ]


def median_pair(
    first: Callable[[], None], second: Callable[[], None]
) -> tuple[float, float]:
    """Median seconds per call of each, timed in interleaved rounds (same machine state)."""
    first()
    second()
    a, b = [], []
    for _ in range(ROUNDS):
        for function, times in ((first, a), (second, b)):
            start = time.perf_counter()
            for _ in range(PER_ROUND):
                function()
            times.append((time.perf_counter() - start) / PER_ROUND)
    return statistics.median(a), statistics.median(b)


def main() -> int:
    print(f"median of {ROUNDS} interleaved rounds; target pki/sliced <= {TARGET}")
    print(f"{'vector':7} {'what':32} {'pki us':>8} {'sliced us':>10} {'ratio':>7}")
    for vector, name in (("SGX v3", "sgx_quote_v3"), ("TDX v4", "tdx_quote_v4")):
        for label, with_pki, sliced in workload(name):
            p, s = median_pair(with_pki, sliced)
            flag = "" if p / s <= TARGET else "  MISSED"
            print(f"{vector:7} {label:32} {p * 1e6:8.1f} {s * 1e6:10.1f} {p / s:6.2f}x{flag}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
