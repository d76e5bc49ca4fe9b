"""AMD's certificate revocation lists: what KDS serves at ``/{vcek,vlek}/v1/{product}/crl``.

Each product line's ARK signs one CRL (RSASSA-PSS, SHA-384) listing the certificates it
revoked: ASKs and ASVKs by serial number. A VCEK or VLEK is issued by an ASK/ASVK, not by
the ARK, so an ARK's CRL can name one only as an indirect entry (RFC 5280 section 5.3.3:
a ``certificateIssuer`` entry extension naming the ASK/ASVK, which then holds for the
entries after it until another one names a different issuer).

Here only bytes become CRLs; whether one applies, verifies and is current is the
verifier's decision (:mod:`attestcall.amd.verify.revocation`).
"""

from __future__ import annotations

import re

from cryptography import x509

from attestcall.errors import CollateralError

PEM_MARK = b"-----BEGIN X509 CRL-----"
_PEM_BLOCK = re.compile(rb"-----BEGIN X509 CRL-----.+?-----END X509 CRL-----", re.S)


def load_crl(data: bytes) -> x509.CertificateRevocationList:
    """One CRL, DER or PEM; :class:`CollateralError` if it is neither."""
    crls = load_crls(data)
    if len(crls) != 1:
        raise CollateralError(f"expected one CRL, found {len(crls)}")
    return crls[0]


def load_crls(data: bytes) -> list[x509.CertificateRevocationList]:
    """Every CRL in ``data``: the ``X509 CRL`` blocks of PEM text (other blocks, such as
    certificates, are skipped), or one DER CRL. :class:`CollateralError` when PEM has a
    block that does not parse, or DER is not a CRL."""
    data = bytes(data)
    if PEM_MARK in data:
        found = []
        for block in _PEM_BLOCK.findall(data):
            try:
                found.append(x509.load_pem_x509_crl(block))
            except ValueError as exc:
                raise CollateralError(f"a PEM CRL does not parse: {exc}") from None
        return found
    try:
        return [x509.load_der_x509_crl(data)]
    except ValueError:
        raise CollateralError("not a CRL (DER or PEM)") from None


def issuer_common_name(crl: x509.CertificateRevocationList) -> str:
    values = crl.issuer.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(values[0].value) if values else crl.issuer.rfc4514_string()
