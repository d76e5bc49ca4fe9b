"""The simulated SGX platform's collateral, in the shapes Intel's PCS serves.

:func:`collateral` gives the nine ``QuoteCollateralV3`` fields (hex CRLs and signatures, PEM
issuer chains, and the signed JSON texts exactly as signed); :func:`collateral_json` gives
them as the JSON document ``attestcall verify --collateral`` and dcap-qvl read.

- TCB info v3 (``"id": "SGX"``): the state's TCB levels for its FMSPC and PCE-ID, with
  ``issueDate`` and ``nextUpdate`` = issueDate + 30 days, compact JSON in Intel's key order,
  signed (ECDSA P-256 / SHA-256, raw r||s) by the simulated TCB signing key.
- QE identity v2 (``"id": "QE"``): the simulated QE's MRSIGNER, ISVPRODID, MISCSELECT and
  ATTRIBUTES with their masks, TCB levels by ISVSVN; same dates, same signer.
- CRLs (X.509 v2, ECDSA SHA-256, CRL number and authority key identifier as Intel's): the
  root CA CRL signed by the simulated root (valid a year, as Intel's), the PCK CRL signed by
  the PCK Platform CA (valid 30 days). Both are empty unless ``revoked_pck`` is set, which
  lists the simulated PCK certificate in the PCK CRL.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from attestcall.intel.formats.quote import signature_from_der
from attestcall.intel.sim.sgx.certs import pem
from attestcall.intel.sim.sgx.state import SgxState

COLLATERAL_VALIDITY = dt.timedelta(days=30)  # TCB info, QE identity and PCK CRL
ROOT_CRL_VALIDITY = dt.timedelta(days=365)
FIELDS = (
    "pck_crl_issuer_chain",
    "root_ca_crl",
    "pck_crl",
    "tcb_info_issuer_chain",
    "tcb_info",
    "tcb_info_signature",
    "qe_identity_issuer_chain",
    "qe_identity",
    "qe_identity_signature",
)


def _instant(issued: dt.datetime | None) -> dt.datetime:
    if issued is None:
        issued = dt.datetime.now(dt.UTC)
    if issued.tzinfo is None:
        raise ValueError("issued must be timezone-aware")
    return issued.astimezone(dt.UTC).replace(microsecond=0)


def _stamp(instant: dt.datetime) -> str:
    return instant.strftime("%Y-%m-%dT%H:%M:%SZ")


def _dated(document: dict[str, Any], issued: dt.datetime) -> dict[str, Any]:
    """``document`` with issueDate and nextUpdate placed right after ``version``, as Intel
    orders them (any dates it already had are replaced)."""
    dated: dict[str, Any] = {}
    for key, value in document.items():
        if key in ("issueDate", "nextUpdate"):
            continue
        dated[key] = value
        if key == "version":
            dated["issueDate"] = _stamp(issued)
            dated["nextUpdate"] = _stamp(issued + COLLATERAL_VALIDITY)
    return dated


def _compact(document: dict[str, Any]) -> str:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=True)


def sign_text(key: ec.EllipticCurvePrivateKey, text: str) -> str:
    """Hex raw r||s ECDSA P-256 / SHA-256 signature over the exact UTF-8 bytes of ``text``."""
    return signature_from_der(key.sign(text.encode(), ec.ECDSA(hashes.SHA256()))).hex()


def tcb_info_text(state: SgxState, issued: dt.datetime) -> str:
    """The signed TCB info v3 text for the simulated platform."""
    return _compact(_dated(json.loads(state.tcb_levels_json), issued))


def qe_identity_text(state: SgxState, issued: dt.datetime) -> str:
    """The signed QE identity v2 text for the simulated quoting enclave."""
    return _compact(_dated(json.loads(state.qe_identity_json), issued))


def _crl(
    issuer: x509.Certificate,
    key: ec.EllipticCurvePrivateKey,
    issued: dt.datetime,
    validity: dt.timedelta,
    revoked: list[int],
) -> x509.CertificateRevocationList:
    issuer_ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.subject)
        .last_update(issued)
        .next_update(issued + validity)
        .add_extension(x509.CRLNumber(1), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier(issuer_ski.digest, None, None), critical=False)
    )
    for serial in revoked:
        entry = (
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(issued).build()
        )
        builder = builder.add_revoked_certificate(entry)
    return builder.sign(key, hashes.SHA256())


def root_ca_crl(
    state: SgxState, issued: dt.datetime | None = None
) -> x509.CertificateRevocationList:
    """The simulated Intel SGX Root CA's CRL (empty), valid a year from ``issued``."""
    return _crl(state.root_cert, state.root_key, _instant(issued), ROOT_CRL_VALIDITY, [])


def pck_crl(
    state: SgxState, issued: dt.datetime | None = None, *, revoked_pck: bool = False
) -> x509.CertificateRevocationList:
    """The simulated PCK Platform CA's CRL, valid 30 days; lists the simulated PCK
    certificate when ``revoked_pck``."""
    revoked = [state.pck_cert.serial_number] if revoked_pck else []
    return _crl(
        state.platform_ca_cert, state.platform_ca_key, _instant(issued), COLLATERAL_VALIDITY,
        revoked,
    )  # fmt: skip


def collateral(
    state: SgxState, *, issued: dt.datetime | None = None, revoked_pck: bool = False
) -> dict[str, str]:
    """The simulated platform's collateral, in the QuoteCollateralV3 field names."""
    issued = _instant(issued)
    root_pem = pem(state.root_cert).decode()
    signing_chain = pem(state.tcb_signing_cert).decode() + root_pem
    tcb_info = tcb_info_text(state, issued)
    qe_identity = qe_identity_text(state, issued)
    return {
        "pck_crl_issuer_chain": pem(state.platform_ca_cert).decode() + root_pem,
        "root_ca_crl": root_ca_crl(state, issued).public_bytes(Encoding.DER).hex(),
        "pck_crl": pck_crl(state, issued, revoked_pck=revoked_pck).public_bytes(Encoding.DER).hex(),
        "tcb_info_issuer_chain": signing_chain,
        "tcb_info": tcb_info,
        "tcb_info_signature": sign_text(state.tcb_signing_key, tcb_info),
        "qe_identity_issuer_chain": signing_chain,
        "qe_identity": qe_identity,
        "qe_identity_signature": sign_text(state.tcb_signing_key, qe_identity),
    }


def collateral_json(
    state: SgxState, *, issued: dt.datetime | None = None, revoked_pck: bool = False
) -> str:
    """:func:`collateral` as a JSON document (what ``attestcall sim collateral`` writes)."""
    return json.dumps(collateral(state, issued=issued, revoked_pck=revoked_pck), indent=2) + "\n"
