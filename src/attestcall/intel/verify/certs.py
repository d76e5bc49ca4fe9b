"""Parsed X.509 certificates and CRLs, kept process-wide by their exact bytes.

This is a parsing cache, not a trust cache: an entry says what the bytes *are* (the
certificate object, its issuer and subject DER, its tbsCertificate, signature algorithm and
signature, its public key, its validity window, its standard PEM), never that anything
verified. Every signature, validity and revocation check is made by
:mod:`attestcall.intel.verify.appraise` on every uncached verification. The collateral's issuer
chains repeat the same root and intermediates, and the PCK chain shares them, so a
certificate is loaded once however often it appears.

Fields are computed from ``cryptography``'s own encoding of the certificate
(``public_bytes(DER)``), which is what ``x509.Certificate`` equality compares; ``exact``
says whether it is also byte for byte the input (always, for anything that parses as DER
without surprises), which is when :mod:`attestcall.intel.verify.appraise` may check a signature
over the sliced tbs bytes instead of through :mod:`attestcall.pki` (see there why). The
slices are cut with :mod:`attestcall.der`.
"""

from __future__ import annotations

import binascii
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from attestcall import der
from attestcall.lru import Lru

__all__ = [
    "Cert", "clear_parsed", "from_x509", "load_der", "load_pem_chain",
]  # fmt: skip

_BEGIN = b"-----BEGIN CERTIFICATE-----\n"
_END = b"-----END CERTIFICATE-----\n"


def pem_encode(data: bytes) -> bytes:
    """The standard PEM of a DER certificate (64-character lines, LF), as cryptography
    writes it."""
    b64 = binascii.b2a_base64(data, newline=False)
    lines = b"\n".join(b64[i : i + 64] for i in range(0, len(b64), 64))
    return _BEGIN + lines + b"\n" + _END


def _ec_key(cert: x509.Certificate) -> ec.EllipticCurvePublicKey | None:
    try:
        key = cert.public_key()
    except (ValueError, UnsupportedAlgorithm):
        return None
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return key
    return None


class Cert:
    """One parsed certificate. Equality is ``x509.Certificate`` equality (same encoding)."""

    __slots__ = (
        "x509", "der", "exact", "issuer", "subject", "strict", "tbs", "inner_algorithm",
        "algorithm", "signature", "key", "not_before", "not_after", "serial", "_pem", "memo",
    )  # fmt: skip

    def __init__(self, cert: x509.Certificate, original: bytes | None) -> None:
        encoded = cert.public_bytes(serialization.Encoding.DER)
        self.exact = encoded == original
        self.x509 = cert
        self.der = original if self.exact and original is not None else encoded
        self.issuer, self.subject, self.strict = b"", b"", False
        self.tbs, self.inner_algorithm, self.algorithm, self.signature = b"", b"", b"", b""
        self._parts()
        self.key = _ec_key(cert)
        self.not_before: datetime = cert.not_valid_before_utc
        self.not_after: datetime = cert.not_valid_after_utc
        self.serial: int = cert.serial_number
        self._pem: bytes | None = None
        self.memo: dict[str, Any] = {}  # derived parses (the PCK's SGX extension)

    def _parts(self) -> None:
        """Issuer and subject as their exact DER, the tbs/signature slices, the signature
        algorithm inside the tbs and outside it, and whether it is strictly Certificate ::=
        SEQUENCE { tbs, algorithm, BIT STRING with no unused bits } (cryptography tolerates a
        non-zero unused-bits count)."""
        data = self.der
        try:
            tag, start, end = der.header(data)
            if tag != der.SEQUENCE or end != len(data):
                return
            parts = der.spans(data, start, end)
            if not parts or parts[0][0] != der.SEQUENCE:
                return
            fields = der.spans(data, parts[0][2], parts[0][3])
        except der.DerError:
            return
        bits = parts[2] if len(parts) == 3 else None
        first = 1 if fields and fields[0][0] == 0xA0 else 0  # [0] version
        if len(fields) < first + 5:
            return
        inner, issuer, subject = fields[first + 1], fields[first + 2], fields[first + 4]
        self.inner_algorithm = data[inner[1] : inner[3]]
        self.issuer = data[issuer[1] : issuer[3]]
        self.subject = data[subject[1] : subject[3]]
        self.strict = (
            bits is not None and bits[0] == 0x03 and bits[2] < bits[3] and not data[bits[2]]
        )
        if bits is not None and self.strict:
            self.tbs = data[parts[0][1] : parts[0][3]]
            self.algorithm = data[parts[1][1] : parts[1][3]]
            self.signature = data[bits[2] + 1 : bits[3]]

    @property
    def pem(self) -> bytes:
        if self._pem is None:
            self._pem = pem_encode(self.der)
        return self._pem

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Cert) and self.der == other.der

    def __hash__(self) -> int:
        return hash(self.der)


_by_der: Lru[bytes, Cert] = Lru(512)  # exact DER -> Cert
_chains: Lru[bytes | str, tuple[Cert, ...]] = Lru(256)  # exact PEM chain -> its certificates


def clear_parsed() -> None:
    """Forget every parsed certificate and chain (nothing here is a verification result)."""
    _by_der.clear()
    _chains.clear()


def load_der(data: bytes) -> Cert:
    """The certificate in exactly these DER bytes (``x509.load_der_x509_certificate``'s
    errors)."""
    return _by_der.get_or_create(data, lambda: Cert(x509.load_der_x509_certificate(data), data))


def from_x509(cert: x509.Certificate) -> Cert:
    """A parsed view of a certificate already loaded (its original bytes are unknown)."""
    return Cert(cert, None)


def _fast_chain(data: bytes) -> tuple[Cert, ...] | None:
    """The chain if ``data`` is exactly standard PEM blocks (LF, each ending in a newline),
    which is then exactly what ``load_pem_x509_certificates`` would read; else None."""
    blocks = data.split(_END)
    if len(blocks) < 2 or blocks[-1]:
        return None
    certs = []
    for block in blocks[:-1]:
        if not block.startswith(_BEGIN):
            return None
        try:
            certs.append(load_der(binascii.a2b_base64(block[len(_BEGIN) :])))
        except (ValueError, x509.InvalidVersion, binascii.Error):
            return None
    if b"".join(cert.pem for cert in certs) != data:
        return None
    return tuple(certs)


def load_pem_chain(data: bytes | str) -> tuple[Cert, ...]:
    """``x509.load_pem_x509_certificates`` (same certificates, same errors), parsed once
    per exact input."""

    def load() -> tuple[Cert, ...]:
        raw = data.encode("ascii") if isinstance(data, str) else data
        fast = _fast_chain(raw)
        if fast is not None:
            return fast
        return tuple(from_x509(cert) for cert in x509.load_pem_x509_certificates(raw))

    return _chains.get_or_create(data, load)
