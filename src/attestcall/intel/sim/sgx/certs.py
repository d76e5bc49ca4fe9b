"""Issuing the simulated platform's X.509 certificates, shaped like Intel's.

Names carry Intel's attributes in Intel's order, and every certificate carries Intel's
extension set in Intel's order (AKI, CRL distribution point, SKI, key usage, basic
constraints, then any extra extension such as the PCK's SGX extension).
"""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _name(common_name: str) -> x509.Name:
    # Intel's attribute order: CN, O, L, ST, C.
    return x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Intel Corporation"),
        x509.NameAttribute(NameOID.LOCALITY_NAME, "Santa Clara"),
        x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "CA"),
        x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
    ])  # fmt: skip


def _key_usage(*, sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=sign, content_commitment=sign, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=not sign,
        crl_sign=not sign, encipher_only=False, decipher_only=False,
    )  # fmt: skip


def certificate(
    *,
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate | None,
    issuer_key: ec.EllipticCurvePrivateKey,
    not_before: dt.datetime,
    not_after: dt.datetime,
    crl_url: str,
    path_length: int | None,
    ca: bool,
    extra: x509.ExtensionType | None = None,
) -> x509.Certificate:
    """A certificate with Intel's extension set, in Intel's order."""
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    aki_digest = ski.digest
    if issuer is not None:
        issuer_ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        aki_digest = issuer_ski.value.digest
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer.subject if issuer is not None else _name(subject))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.AuthorityKeyIdentifier(aki_digest, None, None), critical=False)
        .add_extension(
            x509.CRLDistributionPoints([
                x509.DistributionPoint([x509.UniformResourceIdentifier(crl_url)], None, None, None)
            ]),
            critical=False,
        )
        .add_extension(ski, critical=False)
        .add_extension(_key_usage(sign=not ca), critical=True)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length), critical=True)
    )
    if extra is not None:
        builder = builder.add_extension(extra, critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def years_after(start: dt.datetime, years: int) -> dt.datetime:
    try:
        return start.replace(year=start.year + years)
    except ValueError:  # 29 February
        return start.replace(year=start.year + years, day=28)
