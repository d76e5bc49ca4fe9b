"""Test-only forgery of AMD-shaped certificate chains and signed SNP reports.

Production code never builds chains; these helpers let tests cover what the real vectors
cannot (a Turin report, a VLEK, an unpinned or SIMULATED ARK, a VCEK for another chip or
TCB). RSA-4096 keys are slow to generate, so two are made once per session and reused.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from functools import cache

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from attestcall import der
from attestcall.amd.formats import certs as amdcerts
from attestcall.amd.formats import report as snp

PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)
NOT_BEFORE = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
NOT_AFTER = dt.datetime(2034, 1, 1, tzinfo=dt.UTC)
AT = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)


@cache
def rsa_key(slot: int) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=4096)


@cache
def ec_key(slot: int) -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


def name(common_name: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Engineering"),
        x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Advanced Micro Devices"),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])


def _ext(oid: str, value: bytes) -> x509.UnrecognizedExtension:
    return x509.UnrecognizedExtension(x509.ObjectIdentifier(oid), value)


def _ia5(text: str) -> bytes:
    return der.encode_ia5_string(text)


@dataclass(frozen=True)
class Tcb:
    bootloader: int = 3
    tee: int = 0
    snp: int = 8
    microcode: int = 115
    fmc: int | None = None

    def raw(self, product: str) -> int:
        if product == snp.TURIN:
            data = bytes([self.fmc or 0, self.bootloader, self.tee, self.snp, 0, 0, 0,
                          self.microcode])
        else:
            data = bytes([self.bootloader, self.tee, 0, 0, 0, 0, self.snp, self.microcode])
        return int.from_bytes(data, "little")


def vek_cert(*, issuer: x509.Name, issuer_key: rsa.RSAPrivateKey, key: ec.EllipticCurvePrivateKey,
             product_name: str, tcb: Tcb, hwid: bytes | None = None, csp_id: str | None = None,
             not_before: dt.datetime = NOT_BEFORE, not_after: dt.datetime = NOT_AFTER,
             kind: str = "VCEK") -> x509.Certificate:
    builder = (x509.CertificateBuilder().subject_name(name(f"SEV-{kind}")).issuer_name(issuer)
               .public_key(key.public_key()).serial_number(1)
               .not_valid_before(not_before).not_valid_after(not_after))
    extensions = [
        (amdcerts.OID_STRUCT_VERSION, der.encode_integer(1 if tcb.fmc is not None else 0)),
        (amdcerts.OID_PRODUCT_NAME, _ia5(product_name)),
        (amdcerts.OID_BOOTLOADER, der.encode_integer(tcb.bootloader)),
        (amdcerts.OID_TEE, der.encode_integer(tcb.tee)),
        (amdcerts.OID_SNP, der.encode_integer(tcb.snp)),
        (amdcerts.OID_MICROCODE, der.encode_integer(tcb.microcode)),
    ]
    if tcb.fmc is not None:
        extensions.append((amdcerts.OID_FMC, der.encode_integer(tcb.fmc)))
    if hwid is not None:
        extensions.append((amdcerts.OID_HWID, hwid))
    if csp_id is not None:
        extensions.append((amdcerts.OID_CSP_ID, _ia5(csp_id)))
    for oid, value in extensions:
        builder = builder.add_extension(_ext(oid, value), critical=False)
    return builder.sign(issuer_key, hashes.SHA384(), rsa_padding=PSS)


def ca_cert(*, subject: x509.Name, key: rsa.RSAPrivateKey, issuer: x509.Name,
            issuer_key: rsa.RSAPrivateKey) -> x509.Certificate:
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
            .public_key(key.public_key()).serial_number(0x10000)
            .not_valid_before(dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
            .not_valid_after(dt.datetime(2045, 1, 1, tzinfo=dt.UTC))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(issuer_key, hashes.SHA384(), rsa_padding=PSS))


@dataclass(frozen=True)
class Chain:
    ark: x509.Certificate
    ask: x509.Certificate
    vek: x509.Certificate
    vek_key: ec.EllipticCurvePrivateKey
    product: str

    def der(self, which: str) -> bytes:
        return getattr(self, which).public_bytes(Encoding.DER)

    def pem(self) -> bytes:
        return b"".join(c.public_bytes(Encoding.PEM) for c in (self.vek, self.ask, self.ark))


@cache
def chain(product: str = snp.MILAN, *, root_label: str = "ARK-{product}", kind: str = "VCEK",
          tcb: Tcb = Tcb(), hwid: bytes | None = None, key_slot: int = 0,
          not_before: dt.datetime = NOT_BEFORE) -> Chain:
    """A chain shaped like AMD's. ``hwid`` defaults to the Milan vector's CHIP_ID (or 8
    bytes on Turin)."""
    ark_name = name(root_label.format(product=product))
    ask_name = name(f"SEV-{product}" if kind == "VCEK" else f"SEV-VLEK-{product}")
    ark = ca_cert(subject=ark_name, key=rsa_key(0), issuer=ark_name, issuer_key=rsa_key(0))
    ask = ca_cert(subject=ask_name, key=rsa_key(1), issuer=ark_name, issuer_key=rsa_key(0))
    if kind == "VCEK" and hwid is None:
        hwid = bytes(range(1, 9)) if product == snp.TURIN else MILAN_CHIP_ID
    product_name = "Turin" if product == snp.TURIN else f"{product}-B0"
    vek = vek_cert(issuer=ask_name, issuer_key=rsa_key(1), key=ec_key(key_slot),
                   product_name=product_name, tcb=tcb, kind=kind,
                   hwid=hwid if kind == "VCEK" else None,
                   csp_id="csp.example" if kind == "VLEK" else None, not_before=not_before)
    return Chain(ark=ark, ask=ask, vek=vek, vek_key=ec_key(key_slot), product=product)


def sign(report: snp.Report, key: ec.EllipticCurvePrivateKey) -> bytes:
    """Pack ``report`` with a fresh ECDSA P-384 signature by ``key``."""
    unsigned = dataclasses.replace(report, signature=bytes(snp.SIGNATURE_SIZE))
    body = unsigned.pack()[:snp.SIGNED_SIZE]
    r, s = decode_dss_signature(key.sign(body, ec.ECDSA(hashes.SHA384())))
    signature = r.to_bytes(72, "little") + s.to_bytes(72, "little")
    return body + signature + bytes(snp.SIGNATURE_SIZE - len(signature))


def report_for(chain_: Chain, base: snp.Report, **changes: object) -> bytes:
    """A report like ``base`` with ``changes``, its TCBs and CHIP_ID matching ``chain_``'s
    VCEK unless given, signed by the chain's VCEK key."""
    ext = amdcerts.vek_extensions(chain_.vek)
    tcb = Tcb(ext.bootloader, ext.tee, ext.snp, ext.microcode, ext.fmc).raw(chain_.product)
    fields: dict[str, object] = {"reported_tcb": tcb, "current_tcb": tcb,
                                 "committed_tcb": tcb, "launch_tcb": tcb}
    if ext.hwid is not None:
        fields["chip_id"] = ext.hwid + bytes(64 - len(ext.hwid))
    if ext.csp_id is not None:
        fields["signer_info"] = snp.SIGNING_KEY_VLEK << 2
    fields.update(changes)
    return sign(dataclasses.replace(base, **fields), chain_.vek_key)


MILAN_CHIP_ID = bytes.fromhex(
    "d49554ec717f4e5b0fe6b143bcf0405bd7ae304727edf46603f2a76aef6a3abc"
    "15d7af38db757039029f0efacfd08e244324884738c72b082e2f87a44d541eb6"
)
