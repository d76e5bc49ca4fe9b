"""Issuing the simulated AMD certificates, shaped like AMD's.

ARK (self-signed) -> ASK -> VCEK, and ARK -> ASVK -> VLEK. The ARK, ASK and ASVK keys are
RSA-4096; every certificate is signed with RSASSA-PSS, SHA-384, MGF1 SHA-384 and a 48-byte
salt, as AMD's are. Names carry AMD's attributes in AMD's order (OU, C, L, ST, O, CN); the
common names are AMD's plus " SIMULATED". Extensions follow AMD's: KeyUsage, SKI, basic
constraints and the KDS CRL distribution point on the ARK; SKI, AKI, basic constraints
(path length 0), KeyUsage and the CRL point on the ASK/ASVK; only AMD's own extensions
(1.3.6.1.4.1.3704.1.*, non-critical, in AMD's order) on a VCEK or VLEK.

Serial numbers: AMD's VCEKs have serial number 0, which ``cryptography`` refuses to build
(RFC 5280 wants it positive); the simulated VCEK and VLEK have serial number 1. The ARK and
ASK use AMD's style (0x10000, 0x10001; ASVK 0x10002).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID, ObjectIdentifier

from attestcall import der as asn1  # the module has its own der(cert)
from attestcall.amd.formats import certs as amdcerts
from attestcall.amd.sim.snp.products import Product, Tcb

SIMULATED = "SIMULATED"
RSA_BITS = 4096
PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)
KDS_BASE = "https://kdsintf.amd.com"
VEK_SERIAL = 1  # AMD uses 0, which cryptography will not build
ARK_SERIAL, ASK_SERIAL, ASVK_SERIAL = 0x10000, 0x10001, 0x10002
VEK_YEARS = 7
CA_YEARS = 25


def name(common_name: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Engineering"),
        x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
        x509.NameAttribute(NameOID.LOCALITY_NAME, "Santa Clara"),
        x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "CA"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Advanced Micro Devices"),
        x509.NameAttribute(NameOID.COMMON_NAME, f"{common_name} {SIMULATED}"),
    ])  # fmt: skip


def _key_usage(*, crl_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=False, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=crl_sign,
        encipher_only=False, decipher_only=False,
    )  # fmt: skip


def _crl_point(product: Product, vlek: bool = False) -> x509.CRLDistributionPoints:
    kind = "vlek" if vlek else "vcek"
    url = f"{KDS_BASE}/{kind}/v1/{product.name}/crl"
    return x509.CRLDistributionPoints([
        x509.DistributionPoint([x509.UniformResourceIdentifier(url)], None, None, None)
    ])


def years_after(start: dt.datetime, years: int) -> dt.datetime:
    try:
        return start.replace(year=start.year + years)
    except ValueError:  # 29 February
        return start.replace(year=start.year + years, day=28)


def issue_ark(product: Product, key: rsa.RSAPrivateKey, start: dt.datetime) -> x509.Certificate:
    subject = name(f"ARK-{product.name}")
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(ARK_SERIAL)
        .not_valid_before(start)
        .not_valid_after(years_after(start, CA_YEARS))
        .add_extension(_key_usage(crl_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_crl_point(product), critical=False)
        .sign(key, hashes.SHA384(), rsa_padding=PSS)
    )


def issue_signing_ca(product: Product, key: rsa.RSAPrivateKey, ark: x509.Certificate,
                     ark_key: rsa.RSAPrivateKey, *, vlek: bool = False) -> x509.Certificate:
    """The ASK (signs VCEKs), or with ``vlek`` the ASVK (signs VLEKs)."""
    common_name = f"SEV-VLEK-{product.name}" if vlek else f"SEV-{product.name}"
    ark_ski = ark.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return (
        x509.CertificateBuilder()
        .subject_name(name(common_name))
        .issuer_name(ark.subject)
        .public_key(key.public_key())
        .serial_number(ASVK_SERIAL if vlek else ASK_SERIAL)
        .not_valid_before(ark.not_valid_before_utc)
        .not_valid_after(ark.not_valid_after_utc)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .add_extension(x509.AuthorityKeyIdentifier(ark_ski.digest, None, None), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(crl_sign=False), critical=True)
        .add_extension(_crl_point(product, vlek), critical=False)
        .sign(ark_key, hashes.SHA384(), rsa_padding=PSS)
    )


def vek_extensions(product: Product, tcb: Tcb, *, hwid: bytes | None = None,
                   csp_id: str | None = None) -> list[x509.UnrecognizedExtension]:
    """AMD's VCEK (``hwid``) or VLEK (``csp_id``) extensions, in the order AMD writes them."""
    if (hwid is None) == (csp_id is None):
        raise ValueError("a VCEK has a hwid, a VLEK a CSP id: give exactly one")
    values: list[tuple[str, bytes]] = [
        (amdcerts.OID_STRUCT_VERSION, asn1.encode_integer(product.struct_version)),
        (amdcerts.OID_PRODUCT_NAME, asn1.encode_ia5_string(product.product_name)),
    ]
    spl = amdcerts.OID_PREFIX + ".3."
    if product.name == "Turin":
        values.append((amdcerts.OID_FMC, asn1.encode_integer(tcb.fmc or 0)))
        values += [(amdcerts.OID_BOOTLOADER, asn1.encode_integer(tcb.bootloader)),
                   (amdcerts.OID_TEE, asn1.encode_integer(tcb.tee)),
                   (amdcerts.OID_SNP, asn1.encode_integer(tcb.snp))]
        values += [(spl + str(i), asn1.encode_integer(0)) for i in (5, 6, 7)]
    else:
        values += [(amdcerts.OID_BOOTLOADER, asn1.encode_integer(tcb.bootloader)),
                   (amdcerts.OID_TEE, asn1.encode_integer(tcb.tee))]
        values += [(spl + str(i), asn1.encode_integer(0)) for i in (4, 5, 6, 7)]
        values.append((amdcerts.OID_SNP, asn1.encode_integer(tcb.snp)))
    values.append((amdcerts.OID_MICROCODE, asn1.encode_integer(tcb.microcode)))
    if hwid is not None:
        values.append((amdcerts.OID_HWID, bytes(hwid)))  # raw bytes, as AMD's
    else:
        values.append((amdcerts.OID_CSP_ID, asn1.encode_ia5_string(csp_id or "")))
    return [x509.UnrecognizedExtension(ObjectIdentifier(oid), value) for oid, value in values]


def issue_vek(product: Product, tcb: Tcb, key: ec.EllipticCurvePublicKey,
              signer: x509.Certificate, signer_key: rsa.RSAPrivateKey, *,
              hwid: bytes | None = None, csp_id: str | None = None) -> x509.Certificate:
    """A VCEK (with ``hwid``) or VLEK (with ``csp_id``) certificate for ``tcb``."""
    common_name = "SEV-VCEK" if hwid is not None else "SEV-VLEK"
    start = signer.not_valid_before_utc
    builder = (
        x509.CertificateBuilder()
        .subject_name(name(common_name))
        .issuer_name(signer.subject)
        .public_key(key)
        .serial_number(VEK_SERIAL)
        .not_valid_before(start)
        .not_valid_after(min(years_after(start, VEK_YEARS), signer.not_valid_after_utc))
    )
    for extension in vek_extensions(product, tcb, hwid=hwid, csp_id=csp_id):
        builder = builder.add_extension(extension, critical=False)
    return builder.sign(signer_key, hashes.SHA384(), rsa_padding=PSS)


def issue_crl(ark: x509.Certificate, ark_key: rsa.RSAPrivateKey,
              revoked: Sequence[x509.Certificate] = (), *,
              this_update: dt.datetime | None = None,
              next_update: dt.datetime | None = None, number: int = 1,
              ) -> x509.CertificateRevocationList:
    """The ARK's CRL, shaped like AMD's (AKI and CRL number, RSASSA-PSS SHA-384), listing
    ``revoked``: an ASK or ASVK (the ARK issued it) directly, a VCEK or VLEK as an
    indirect entry naming its ASK/ASVK (``certificateIssuer``). Default window: the
    ARK's own validity."""
    ark_ski = ark.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    this_update = this_update or ark.not_valid_before_utc
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ark.subject)
        .last_update(this_update)
        .next_update(next_update or ark.not_valid_after_utc)
        .add_extension(x509.AuthorityKeyIdentifier(ark_ski.digest, None, None), critical=False)
        .add_extension(x509.CRLNumber(number), critical=False)
    )
    for cert in revoked:
        entry = (x509.RevokedCertificateBuilder().serial_number(cert.serial_number)
                 .revocation_date(this_update)
                 .add_extension(x509.CRLReason(x509.ReasonFlags.key_compromise), critical=False))
        if cert.issuer != ark.subject:
            entry = entry.add_extension(
                x509.CertificateIssuer([x509.DirectoryName(cert.issuer)]), critical=True)
        builder = builder.add_revoked_certificate(entry.build())
    return builder.sign(ark_key, hashes.SHA384(), rsa_padding=PSS)


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def certificate_table(vek: x509.Certificate, signing_ca: x509.Certificate,
                      ark: x509.Certificate, *, vlek: bool = False) -> bytes:
    """The GHCB certificate table the host hands out with a report: the VCEK (or VLEK),
    the ASK (or ASVK), the ARK, each DER under AMD's GUID."""
    vek_guid = amdcerts.VLEK_GUID if vlek else amdcerts.VCEK_GUID
    return amdcerts.pack_table([(vek_guid, der(vek)), (amdcerts.ASK_GUID, der(signing_ca)),
                                (amdcerts.ARK_GUID, der(ark))])
