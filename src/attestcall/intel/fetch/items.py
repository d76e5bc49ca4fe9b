"""Intel's PCS / PCCS v4 answers one at a time: what each item is, where an upstream serves
it, and the check an answer must pass before a cache keeps it.

Items (kind, key)::

    pckcrl      processor | platform          GET /sgx/certification/v4/pckcrl?ca=..&encoding=der
    rootcacrl   ""                            GET /sgx/certification/v4/rootcacrl
                                              (Intel's PCS: IntelSGXRootCA.der on its site)
    tcb         sgx/FMSPC | tdx/FMSPC [/early] GET /{tee}/certification/v4/tcb?fmspc=..
    qeidentity  sgx | tdx [/early]            GET /{tee}/certification/v4/qe/identity
    pckcert     the query, canonical          GET /sgx/certification/v4/pckcert?...

:func:`check` takes the answer's body and headers and returns what to keep — the body
(CRLs as DER, the signed JSON documents exactly as served, PEM certificates), the headers
that matter as the upstream gave them (URL-encoded PEM issuer chains), and the item's own
next update — or raises :class:`CollateralError` with one line. The check is the item's
own: it parses, its issuer chain ends at a trusted root (the pinned Intel SGX Root CA, plus
any extra root given), every link and the item's signature verify, and it is the item asked
for (TEE, FMSPC, CA). Dates are not checked: freshness is the verifier's decision.
"""

from __future__ import annotations

import binascii
import json
import re
import urllib.parse
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from attestcall import pki
from attestcall.errors import CollateralError
from attestcall.fetch import Checked
from attestcall.intel.fetch.pcs import (
    API_PATH,
    INTEL_PCS_HOST,
    INTEL_ROOT_CA_CRL_URL,
    decode_chain,
    service_root,
    top_level_spans,
)
from attestcall.intel.fetch.source import IssuedCrl, SignedText
from attestcall.intel.formats.collateral import (
    QE_ID_SGX,
    QE_ID_TDX,
    TCB_INFO_SGX,
    TCB_INFO_TDX,
    Collateral,
    parse_qe_identity,
    parse_tcb_info,
)
from attestcall.intel.formats.quote import signature_to_der
from attestcall.intel.roots import intel_root

KINDS = ("pckcrl", "rootcacrl", "tcb", "qeidentity", "pckcert")
TEES = ("sgx", "tdx")
CAS = ("processor", "platform")
UPDATES = ("standard", "early")

PCK_CRL_CHAIN = "SGX-PCK-CRL-Issuer-Chain"
TCB_INFO_CHAIN = "TCB-Info-Issuer-Chain"
QE_IDENTITY_CHAIN = "SGX-Enclave-Identity-Issuer-Chain"
PCK_CERT_CHAIN = "SGX-PCK-Certificate-Issuer-Chain"
# Header names each kind keeps: the first is the name it is served under, the others are
# older names an upstream may use instead.
CHAIN_HEADERS = {
    "pckcrl": (PCK_CRL_CHAIN,),
    "tcb": (TCB_INFO_CHAIN, "SGX-TCB-Info-Issuer-Chain"),
    "qeidentity": (QE_IDENTITY_CHAIN, "Enclave-Identity-Issuer-Chain"),
    "pckcert": (PCK_CERT_CHAIN,),
}
PCK_CERT_HEADERS = ("SGX-TCBm", "SGX-FMSPC", "SGX-PCK-Certificate-CA-Type")
# pckcert query parameters: name -> hex digits allowed (None: any even number up to 1536)
PCK_CERT_PARAMS: dict[str, int | None] = {
    "encrypted_ppid": None, "cpusvn": 32, "pcesvn": 4, "pceid": 4, "qeid": 32,
}
_HEX = re.compile(r"[0-9A-Fa-f]+")
_FMSPC = re.compile(r"[0-9A-Fa-f]{12}")
_HEADER_VALUE = re.compile(r"[\x21-\x7e]+")  # URL-encoded PEM: printable, no spaces
_PCK_CA = {"processor": "PCK Processor CA", "platform": "PCK Platform CA"}


# ------------------------------------------------------------------------------ keys


def pckcrl_key(ca: str) -> str:
    if ca not in CAS:
        raise CollateralError(f"the PCK CA is 'processor' or 'platform', not {ca!r}")
    return ca


def tcb_key(tee: str, fmspc: str, update: str = "standard") -> str:
    if tee not in TEES:
        raise CollateralError(f"the TEE is 'sgx' or 'tdx', not {tee!r}")
    if not _FMSPC.fullmatch(fmspc):
        raise CollateralError(f"the FMSPC is 12 hex digits, not {fmspc!r}")
    return f"{tee}/{fmspc.upper()}" + _update_suffix(update)


def qe_key(tee: str, update: str = "standard") -> str:
    if tee not in TEES:
        raise CollateralError(f"the TEE is 'sgx' or 'tdx', not {tee!r}")
    return tee + _update_suffix(update)


def _update_suffix(update: str) -> str:
    if update not in UPDATES:
        raise CollateralError(f"update is 'standard' or 'early', not {update!r}")
    return "" if update == "standard" else "/early"


def pckcert_key(params: Mapping[str, str]) -> str:
    """The canonical query of a pckcert request: known parameters only, sorted, hex
    upper-cased; :class:`CollateralError` for anything else."""
    unknown = sorted(set(params) - set(PCK_CERT_PARAMS))
    if unknown:
        raise CollateralError(f"unknown pckcert parameter {unknown[0]!r}; known: "
                              f"{', '.join(PCK_CERT_PARAMS)}")
    for required in ("cpusvn", "pcesvn", "pceid"):
        if required not in params:
            raise CollateralError(f"pckcert needs {required}")
    if "encrypted_ppid" not in params and "qeid" not in params:
        raise CollateralError("pckcert needs encrypted_ppid or qeid")
    for name, value in params.items():
        size = PCK_CERT_PARAMS[name]
        if not _HEX.fullmatch(value) or (size is not None and len(value) != size) \
                or (size is None and (len(value) % 2 or len(value) > 1536)):
            raise CollateralError(f"pckcert parameter {name} is not "
                                  + (f"{size} hex digits" if size else "hex"))
    return "&".join(f"{name}={params[name].upper()}" for name in sorted(params))


def _tee_and_update(key: str) -> tuple[str, str, str]:
    """(tee, fmspc or "", update) of a tcb or qeidentity key."""
    parts = key.split("/")
    update = "early" if parts[-1] == "early" else "standard"
    if update == "early":
        parts.pop()
    return parts[0], (parts[1] if len(parts) > 1 else ""), update


def url(base: str, kind: str, key: str) -> str:
    """Where the PCS/PCCS at ``base`` serves the item (the root CA CRL of Intel's own PCS
    comes from Intel's certificate site, as the Intel SGX Root CA's CRL distribution point
    says)."""
    root = service_root(base)
    if kind == "pckcrl":
        return f"{root}/sgx/{API_PATH}/pckcrl?ca={key}&encoding=der"
    if kind == "rootcacrl":
        if urllib.parse.urlsplit(root).hostname == INTEL_PCS_HOST:
            return INTEL_ROOT_CA_CRL_URL
        return f"{root}/sgx/{API_PATH}/rootcacrl"
    if kind in ("tcb", "qeidentity"):
        tee, fmspc, update = _tee_and_update(key)
        query = {"fmspc": fmspc} if kind == "tcb" else {}
        if update != "standard":
            query["update"] = update
        path = "tcb" if kind == "tcb" else "qe/identity"
        tail = ("?" + urllib.parse.urlencode(query)) if query else ""
        return f"{root}/{tee}/{API_PATH}/{path}{tail}"
    if kind == "pckcert":
        return f"{root}/sgx/{API_PATH}/pckcert?{key}"
    raise CollateralError(f"unknown Intel collateral kind {kind!r}")


# ------------------------------------------------------------------------------ checks


def _header(headers: Mapping[str, str], names: Sequence[str]) -> tuple[str, str] | None:
    lowered = {name.lower(): value for name, value in headers.items()}
    for name in names:
        value = lowered.get(name.lower())
        if value is not None:
            return name, value
    return None


def _chain_header(kind: str, headers: Mapping[str, str]) -> tuple[str, list[x509.Certificate]]:
    """The raw value of the kind's issuer-chain header and its certificates."""
    names = CHAIN_HEADERS[kind]
    found = _header(headers, names)
    if found is None:
        raise CollateralError(f"the answer has no {names[0]} header")
    name, value = found
    if not _HEADER_VALUE.fullmatch(value):
        raise CollateralError(f"the {name} header is not URL-encoded PEM")
    _, certs = decode_chain(value)
    if not certs:
        raise CollateralError(f"the {name} header is not a PEM certificate chain")
    return value, certs


def _trusted_chain(certs: Sequence[x509.Certificate], roots: Sequence[x509.Certificate],
                   what: str) -> None:
    trusted = [intel_root(), *roots]
    chain = pki.check_chain(certs, trusted)
    for index, link in enumerate(chain.links):
        if link is not None:
            raise CollateralError(f"the {what} issuer chain does not hold at certificate "
                                  f"#{index}: {link.detail}")
    if not chain.pinned:
        raise CollateralError(f"the {what} issuer chain does not end at a trusted Intel root")


def load_crl(body: bytes, what: str) -> x509.CertificateRevocationList:
    """A CRL served as DER, PEM or hex (a PCCS serves the root CA CRL as hex). DER is read
    as it came: stripped as text, one whose signature ends in a whitespace byte would lose
    it."""
    try:
        if body[:1] == b"\x30":
            return x509.load_der_x509_crl(body)
        data = body.strip()
        if data.startswith(b"-----BEGIN X509 CRL-----"):
            return x509.load_pem_x509_crl(data)
        if _HEX.fullmatch(data.decode("ascii", "replace") or "-"):
            data = binascii.unhexlify(data)
        return x509.load_der_x509_crl(data)
    except (ValueError, binascii.Error):
        raise CollateralError(f"the {what} is not a CRL (DER, PEM or hex)") from None


def _crl_next_update(crl: x509.CertificateRevocationList, what: str) -> datetime:
    if crl.next_update_utc is None:
        raise CollateralError(f"the {what} has no nextUpdate")
    return crl.next_update_utc


def _common_name(name: x509.Name) -> str:
    values = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(values[0].value) if values else ""


def _check_pckcrl(key: str, body: bytes, headers: Mapping[str, str],
                  roots: Sequence[x509.Certificate]) -> Checked:
    crl = load_crl(body, "PCK CRL")
    raw, certs = _chain_header("pckcrl", headers)
    _trusted_chain(certs, roots, "PCK CRL")
    failure = pki.crl_issued_by(crl, certs[0])
    if failure is not None:
        raise CollateralError(f"the PCK CRL is not issued by its issuer chain: {failure.detail}")
    if _PCK_CA[key] not in _common_name(crl.issuer):
        raise CollateralError(f"the CRL is not the {_PCK_CA[key]}'s "
                              f"(issuer {_common_name(crl.issuer)!r})")
    return Checked(crl.public_bytes(Encoding.DER), {PCK_CRL_CHAIN: raw},
                   _crl_next_update(crl, "PCK CRL"))


def _check_rootcacrl(body: bytes, roots: Sequence[x509.Certificate]) -> Checked:
    crl = load_crl(body, "root CA CRL")
    for root in (intel_root(), *roots):
        if pki.crl_issued_by(crl, root) is None:
            return Checked(crl.public_bytes(Encoding.DER), {},
                           _crl_next_update(crl, "root CA CRL"))
    raise CollateralError("the root CA CRL is not issued and signed by a trusted Intel root")


def split_signed(body: bytes, member: str) -> tuple[str, str]:
    """The exact text of ``member`` in a signed JSON answer and its hex signature."""
    try:
        text = body.decode("utf-8")
        spans = top_level_spans(text)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise CollateralError("the answer is not a JSON object") from None
    if member not in spans or "signature" not in spans:
        raise CollateralError(f"the answer lacks {member!r} or 'signature'")
    signed = text[slice(*spans[member])]
    signature = json.loads(text[slice(*spans["signature"])])
    if not isinstance(signature, str) or not re.fullmatch(r"[0-9A-Fa-f]{128}", signature):
        raise CollateralError("the signature is not 64 bytes of hex")
    return signed, signature.lower()


def _check_signed(kind: str, key: str, body: bytes, headers: Mapping[str, str],
                  roots: Sequence[x509.Certificate]) -> Checked:
    member = "tcbInfo" if kind == "tcb" else "enclaveIdentity"
    text, signature = split_signed(body, member)
    tee, fmspc, _ = _tee_and_update(key)
    if kind == "tcb":
        info = parse_tcb_info(text)
        wanted = TCB_INFO_SGX if tee == "sgx" else TCB_INFO_TDX
        if info.id != wanted:
            raise CollateralError(f"the TCB info is {info.id}'s, not {wanted}'s")
        if info.fmspc.hex().upper() != fmspc:
            raise CollateralError(f"the TCB info is FMSPC {info.fmspc.hex().upper()}'s, "
                                  f"not {fmspc}'s")
        next_update, what = info.next_update, "TCB info"
    else:
        identity = parse_qe_identity(text)
        wanted = QE_ID_SGX if tee == "sgx" else QE_ID_TDX
        if identity.id != wanted:
            raise CollateralError(f"the QE identity is {identity.id}'s, not {wanted}'s")
        next_update, what = identity.next_update, "QE identity"
    raw, certs = _chain_header(kind, headers)
    _trusted_chain(certs, roots, what)
    key_ = certs[0].public_key()
    try:
        if not isinstance(key_, ec.EllipticCurvePublicKey):
            raise InvalidSignature
        key_.verify(signature_to_der(bytes.fromhex(signature)), text.encode("utf-8"),
                    ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        raise CollateralError(f"the {what} signature does not verify with its signing "
                              "certificate") from None
    return Checked(bytes(body), {CHAIN_HEADERS[kind][0]: raw}, next_update)


def _check_pckcert(body: bytes, headers: Mapping[str, str],
                   roots: Sequence[x509.Certificate]) -> Checked:
    try:
        certs = x509.load_pem_x509_certificates(body)
    except ValueError:
        certs = []
    if len(certs) != 1:
        raise CollateralError("the answer is not one PEM certificate")
    raw, chain = _chain_header("pckcert", headers)
    _trusted_chain([certs[0], *chain], roots, "PCK certificate")
    kept = {PCK_CERT_CHAIN: raw}
    for name in PCK_CERT_HEADERS:
        found = _header(headers, (name,))
        if found is not None and _HEADER_VALUE.fullmatch(found[1]):
            kept[name] = found[1]
    return Checked(certs[0].public_bytes(Encoding.PEM), kept, certs[0].not_valid_after_utc)


def check(kind: str, key: str, body: bytes, headers: Mapping[str, str],
          roots: Sequence[x509.Certificate] = ()) -> Checked:
    """The answer for item (``kind``, ``key``), checked (module documentation); ``roots``
    are trusted beside the pinned Intel SGX Root CA (simulated roots, when asked)."""
    if kind == "pckcrl":
        return _check_pckcrl(pckcrl_key(key), body, headers, roots)
    if kind == "rootcacrl":
        return _check_rootcacrl(body, roots)
    if kind in ("tcb", "qeidentity"):
        return _check_signed(kind, key, body, headers, roots)
    if kind == "pckcert":
        return _check_pckcert(body, headers, roots)
    raise CollateralError(f"unknown Intel collateral kind {kind!r}")


# ------------------------------------------------------------------------ kept answers


def chain_text(headers: Mapping[str, str], kind: str) -> str:
    """The PEM issuer chain a kept answer's header holds."""
    found = _header(headers, CHAIN_HEADERS[kind])
    if found is None:
        raise CollateralError(f"the kept {kind} answer has no issuer chain")
    return urllib.parse.unquote(found[1])


def issued_crl(body: bytes, headers: Mapping[str, str]) -> IssuedCrl:
    """A kept PCK CRL as the verifier's source answers it."""
    return IssuedCrl(body.hex(), chain_text(headers, "pckcrl"))


def signed_text(kind: str, body: bytes, headers: Mapping[str, str]) -> SignedText:
    """A kept TCB info or QE identity as the verifier's source answers it."""
    text, signature = split_signed(body, "tcbInfo" if kind == "tcb" else "enclaveIdentity")
    return SignedText(text, signature, chain_text(headers, kind))


def quote_chain(pem: str) -> str:
    """A PEM chain as PCS sends it in a header: URL-encoded."""
    return urllib.parse.quote(pem, safe="")


def signed_body(member: str, text: str, signature: str) -> bytes:
    """A signed document as PCS serves it: ``{"member":TEXT,"signature":"HEX"}``."""
    return ('{"' + member + '":' + text + ',"signature":"' + signature + '"}').encode("utf-8")


def answers_of(collateral: Collateral) -> list[tuple[str, str, bytes, dict[str, str]]]:
    """A ``QuoteCollateralV3`` document as the four answers a PCCS would give for it:
    (kind, key, body, headers), each still to be :func:`check`-ed."""
    fields: dict[str, Any] = dict(zip(
        ("pck_crl_issuer_chain", "root_ca_crl", "pck_crl", "tcb_info_issuer_chain",
         "tcb_info", "tcb_info_signature", "qe_identity_issuer_chain", "qe_identity",
         "qe_identity_signature"), collateral.key, strict=True))
    issuer = _common_name(collateral.pck_crl.issuer)
    ca = next((ca for ca, name in _PCK_CA.items() if name in issuer), None)
    if ca is None:
        raise CollateralError(f"the PCK CRL's issuer {issuer!r} is neither PCK CA")
    info, identity = collateral.tcb_info, collateral.qe_identity
    tee = "tdx" if info.id == TCB_INFO_TDX else "sgx"
    qe_tee = "tdx" if identity.id == QE_ID_TDX else "sgx"
    return [
        ("pckcrl", ca, collateral.pck_crl_der,
         {PCK_CRL_CHAIN: quote_chain(fields["pck_crl_issuer_chain"])}),
        ("rootcacrl", "", collateral.root_ca_crl_der, {}),
        ("tcb", tcb_key(tee, info.fmspc.hex().upper()),
         signed_body("tcbInfo", fields["tcb_info"], fields["tcb_info_signature"].lower()),
         {TCB_INFO_CHAIN: quote_chain(fields["tcb_info_issuer_chain"])}),
        ("qeidentity", qe_key(qe_tee),
         signed_body("enclaveIdentity", fields["qe_identity"],
                     fields["qe_identity_signature"].lower()),
         {QE_IDENTITY_CHAIN: quote_chain(fields["qe_identity_issuer_chain"])}),
    ]


Answer = tuple[str, str, bytes, dict[str, str]]  # kind, key, body, headers


def crl_answer(crl: x509.CertificateRevocationList, pool: Sequence[x509.Certificate],
               roots: Sequence[x509.Certificate] = ()) -> Answer | None:
    """A lone Intel CRL as the answer a PCCS would give for it — the root CA CRL, or a PCK
    CRL with its issuer chain built from ``pool`` (certificates given with it) and the
    trusted roots — or None if it is not an Intel CRL."""
    der = crl.public_bytes(Encoding.DER)
    trusted = [intel_root(), *roots]
    if any(crl.issuer == root.subject for root in trusted):
        return ("rootcacrl", "", der, {})
    issuer = _common_name(crl.issuer)
    ca = next((ca for ca, name in _PCK_CA.items() if name in issuer), None)
    if ca is None:
        return None
    chain: list[x509.Certificate] = []
    subject = crl.issuer
    for _ in range(4):
        found = next((c for c in [*pool, *trusted] if c.subject == subject), None)
        if found is None:
            raise CollateralError(f"the {_PCK_CA[ca]} CRL's issuer chain is not given: "
                                  "import its PEM certificates (PCK CA, root) with it")
        chain.append(found)
        if found.issuer == found.subject:
            break
        subject = found.issuer
    pem = "".join(c.public_bytes(Encoding.PEM).decode() for c in chain)
    return ("pckcrl", ca, der, {PCK_CRL_CHAIN: quote_chain(pem)})
