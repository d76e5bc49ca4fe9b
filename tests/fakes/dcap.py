"""A test Intel-shaped PKI, collateral and DCAP quotes, built with cryptography.

``FakePlatform`` issues root -> PCK Platform CA -> PCK certificate (with the SGX extension)
and root -> TCB signing certificate, writes TCB info (SGX or TDX) and QE identity JSON
signed (raw r||s) by the TCB signing key, CRLs, and quotes v3 (SGX) or v4/v5 (TDX) signed
by an attestation key whose QE report the PCK key signs. Every knob the tests need is a
keyword argument.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from attestcall.intel.formats.pck import PckExtension, PckTcb
from attestcall.intel.formats.quote import (
    CERT_PCK_CHAIN,
    INTEL_QE_VENDOR_ID,
    CertificationData,
    QeReportCertificationData,
    Quote,
    QuoteHeader,
    QuoteSignatureData,
    public_key_to_raw,
    signature_from_der,
)
from attestcall.intel.formats.structs import ReportBody, attributes_bytes
from attestcall.intel.formats.tdx_quote import DcapQuote, TdReportBody

SHA256 = hashes.SHA256()
ECDSA = ec.ECDSA(SHA256)
T0 = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
AT = dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.UTC)
FMSPC = bytes.fromhex("00A067110000")
COMPS = (11, 11, 2, 2, 255, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
QE_MRSIGNER = bytes(range(32))


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Test Corporation"),
        ]
    )


def _cert(
    subject: str,
    issuer: str,
    key: ec.EllipticCurvePrivateKey,
    signer: ec.EllipticCurvePrivateKey,
    serial: int,
    ca: bool,
    extension: x509.ExtensionType | None = None,
    not_before: dt.datetime = T0,
    not_after: dt.datetime = T0 + dt.timedelta(days=3650),
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if extension is not None:
        builder = builder.add_extension(extension, critical=False)
    return builder.sign(signer, SHA256)


def pem(*certs: x509.Certificate) -> str:
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in certs)


def raw_sign(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    return signature_from_der(key.sign(data, ECDSA))


def stamp(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _svns(values: tuple[int, ...]) -> list[dict[str, int]]:
    return [{"svn": v} for v in values]


@dataclass
class FakePlatform:
    """A test PKI and its collateral; ``collateral()`` and ``sgx_quote()`` give the outputs."""

    root_cn: str = "Test SGX Root CA"
    fmspc: bytes = FMSPC
    pck_comps: tuple[int, ...] = COMPS
    pck_pce_svn: int = 13
    tcb_fmspc: bytes | None = None  # the FMSPC the TCB info names (default: fmspc)
    revoke_pck: bool = False
    levels: list[dict[str, Any]] | None = None
    issue: dt.datetime = AT - dt.timedelta(days=10)
    next_update: dt.datetime = AT + dt.timedelta(days=20)
    tdx: bool = False
    qe_isv_svn: int = 8
    keys: dict[str, ec.EllipticCurvePrivateKey] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("root", "ca", "pck", "tcb", "ak"):
            self.keys[name] = ec.generate_private_key(ec.SECP256R1())
        k = self.keys
        self.root = _cert(self.root_cn, self.root_cn, k["root"], k["root"], 1, True)
        ca_cn = "Test SGX PCK Platform CA"
        self.ca = _cert(ca_cn, self.root_cn, k["ca"], k["root"], 2, True)
        ext = PckExtension(
            ppid=bytes(16),
            tcb=PckTcb(self.pck_comps, self.pck_pce_svn, bytes(self.pck_comps)),
            pce_id=b"\x00\x00",
            fmspc=self.fmspc,
            sgx_type=0,
        )
        self.pck = _cert(
            "Test SGX PCK Certificate", ca_cn, k["pck"], k["ca"], 0x1234567, False,
            ext.to_x509_extension(),
        )  # fmt: skip
        self.tcb_cert = _cert("Test SGX TCB Signing", self.root_cn, k["tcb"], k["root"], 3, False)

    # ------------------------------------------------------------------ collateral

    def crl(self, issuer_cn: str, signer: ec.EllipticCurvePrivateKey, serials: list[int]) -> str:
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(_name(issuer_cn))
            .last_update(self.issue)
            .next_update(self.next_update)
        )
        for serial in serials:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(serial)
                .revocation_date(self.issue)
                .build()
            )
        return builder.sign(signer, SHA256).public_bytes(serialization.Encoding.DER).hex()

    def tcb_info_text(self) -> str:
        levels = self.levels
        if levels is None:
            tcb: dict[str, Any] = {"sgxtcbcomponents": _svns(COMPS), "pcesvn": 13}
            if self.tdx:
                tcb["tdxtcbcomponents"] = _svns((0, 0, 3) + (0,) * 13)
            levels = [
                {
                    "tcb": tcb,
                    "tcbDate": "2024-03-13T00:00:00Z",
                    "tcbStatus": "SWHardeningNeeded",
                    "advisoryIDs": ["INTEL-SA-00615"],
                }
            ]
        info: dict[str, Any] = {
            "id": "TDX" if self.tdx else "SGX",
            "version": 3,
            "issueDate": stamp(self.issue),
            "nextUpdate": stamp(self.next_update),
            "fmspc": (self.tcb_fmspc or self.fmspc).hex().upper(),
            "pceId": "0000",
            "tcbType": 0,
            "tcbEvaluationDataNumber": 17,
        }
        if self.tdx:
            info["tdxModule"] = {
                "mrsigner": "00" * 48,
                "attributes": "0000000000000000",
                "attributesMask": "FFFFFFFFFFFFFFFF",
            }
            info["tdxModuleIdentities"] = [
                {
                    "id": "TDX_01",
                    "mrsigner": "00" * 48,
                    "attributes": "0000000000000000",
                    "attributesMask": "FFFFFFFFFFFFFFFF",
                    "tcbLevels": [
                        {"tcb": {"isvsvn": 4}, "tcbDate": "2024-03-13T00:00:00Z",
                         "tcbStatus": "UpToDate"},
                    ],
                }
            ]  # fmt: skip
        info["tcbLevels"] = levels
        return json.dumps(info, separators=(",", ":"))

    def qe_identity_text(self) -> str:
        identity = {
            "id": "TD_QE" if self.tdx else "QE",
            "version": 2,
            "issueDate": stamp(self.issue),
            "nextUpdate": stamp(self.next_update),
            "tcbEvaluationDataNumber": 17,
            "miscselect": "00000000",
            "miscselectMask": "FFFFFFFF",
            "attributes": "11000000000000000000000000000000",
            "attributesMask": "FBFFFFFFFFFFFFFF0000000000000000",
            "mrsigner": QE_MRSIGNER.hex().upper(),
            "isvprodid": 1,
            "tcbLevels": [
                {"tcb": {"isvsvn": 8}, "tcbDate": "2024-03-13T00:00:00Z", "tcbStatus": "UpToDate"},
                {"tcb": {"isvsvn": 6}, "tcbDate": "2021-11-10T00:00:00Z", "tcbStatus": "OutOfDate",
                 "advisoryIDs": ["INTEL-SA-00615"]},
            ],
        }  # fmt: skip
        return json.dumps(identity, separators=(",", ":"))

    def collateral(self) -> dict[str, str]:
        k = self.keys
        info = self.tcb_info_text()
        identity = self.qe_identity_text()
        revoked = [self.pck.serial_number] if self.revoke_pck else [99]
        return {
            "pck_crl_issuer_chain": pem(self.ca, self.root),
            "root_ca_crl": self.crl(self.root_cn, k["root"], []),
            "pck_crl": self.crl("Test SGX PCK Platform CA", k["ca"], revoked),
            "tcb_info_issuer_chain": pem(self.tcb_cert, self.root),
            "tcb_info": info,
            "tcb_info_signature": raw_sign(k["tcb"], info.encode()).hex(),
            "qe_identity_issuer_chain": pem(self.tcb_cert, self.root),
            "qe_identity": identity,
            "qe_identity_signature": raw_sign(k["tcb"], identity.encode()).hex(),
        }

    # ------------------------------------------------------------------ quotes

    def _qe(self) -> QeReportCertificationData:
        auth = bytes(range(32))
        ak_raw = public_key_to_raw(self.keys["ak"].public_key())
        qe_report = ReportBody(
            cpu_svn=bytes(self.pck_comps), misc_select=0, isv_ext_prod_id=bytes(16),
            attributes=attributes_bytes(0x11, 0), mr_enclave=bytes(32), mr_signer=QE_MRSIGNER,
            config_id=bytes(64), isv_prod_id=1, isv_svn=self.qe_isv_svn, config_svn=0,
            isv_family_id=bytes(16),
            report_data=hashlib.sha256(ak_raw + auth).digest() + bytes(32),
        )  # fmt: skip
        chain = pem(self.pck, self.ca, self.root).encode() + b"\x00"
        return QeReportCertificationData(
            qe_report,
            raw_sign(self.keys["pck"], qe_report.pack()),
            auth,
            CertificationData(CERT_PCK_CHAIN, chain),
        )

    def sgx_quote(self, report_data: bytes = b"test".ljust(64, b"\x00")) -> bytes:
        header = QuoteHeader(3, 2, 0, 10, 13, INTEL_QE_VENDOR_ID, bytes(20))
        body = ReportBody(
            cpu_svn=bytes(16), misc_select=0, isv_ext_prod_id=bytes(16),
            attributes=attributes_bytes(0x05, 0xE7), mr_enclave=b"\x11" * 32,
            mr_signer=b"\x22" * 32, config_id=bytes(64), isv_prod_id=3, isv_svn=4, config_svn=0,
            isv_family_id=bytes(16), report_data=report_data,
        )  # fmt: skip
        ak_raw = public_key_to_raw(self.keys["ak"].public_key())
        signed = header.pack() + body.pack()
        sig = QuoteSignatureData(raw_sign(self.keys["ak"], signed), ak_raw, self._qe())
        return Quote(header, body, sig).pack()

    def tdx_quote(self, version: int = 4, td15: bool = False, debug: bool = False) -> bytes:
        header = QuoteHeader(version, 2, 0x81, 0, 0, INTEL_QE_VENDOR_ID, bytes(20))
        extra = (bytes(16), b"\x55" * 48) if td15 else (None, None)
        body = TdReportBody(
            bytes([6, 1, 3]) + bytes(13), b"\x01" * 48, bytes(48), bytes(8),
            (1 if debug else 0x10000000).to_bytes(8, "little"), bytes(8), b"\x02" * 48,
            bytes(48), bytes(48), bytes(48), b"\x03" * 48, b"\x04" * 48, b"\x05" * 48,
            bytes(48), b"td".ljust(64, b"\x00"), *extra,
        )  # fmt: skip
        ak_raw = public_key_to_raw(self.keys["ak"].public_key())
        unsigned = DcapQuote.build(header, body, bytes(64), ak_raw, self._qe())
        signature = raw_sign(self.keys["ak"], unsigned.signed)
        return DcapQuote.build(header, body, signature, ak_raw, self._qe()).pack()
