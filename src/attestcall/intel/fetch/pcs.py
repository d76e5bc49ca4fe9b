"""Fetching a quote's collateral from a service speaking Intel's PCS / PCCS v4 API.

From the PCK certificate in the quote's certification data (type 5 in a v3 quote, nested in
type 6 in v4/v5) come the FMSPC and the PCK CA type (processor or platform, from the
issuer's name). Then, with ``tee`` = ``sgx`` for SGX quotes and ``tdx`` for TDX quotes::

    GET {base}/sgx/certification/v4/pckcrl?ca={ca}&encoding=der
        body: the PCK CRL (DER); header SGX-PCK-CRL-Issuer-Chain
    GET {base}/{tee}/certification/v4/tcb?fmspc={FMSPC}
        body: {"tcbInfo": {...}, "signature": "hex"}; header TCB-Info-Issuer-Chain
        (SGX-TCB-Info-Issuer-Chain from v3-era services)
    GET {base}/{tee}/certification/v4/qe/identity
        body: {"enclaveIdentity": {...}, "signature": "hex"};
        header SGX-Enclave-Identity-Issuer-Chain
    root CA CRL: a PCCS serves it at {base}/sgx/certification/v4/rootcacrl (hex or DER);
        Intel's PCS does not, and the CRL is fetched from Intel's certificate site
        (the Intel SGX Root CA's CRL distribution point).

Issuer chains arrive URL-encoded PEM. The signed texts (``tcb_info``, ``qe_identity``) are
the exact bytes of the inner objects as they appear in the body: located by scanning the
body's top level, never re-serialised. The result is a dict in the ``QuoteCollateralV3``
field names, cached (see :mod:`attestcall.diskcache`) until the earliest ``nextUpdate``
of the TCB info, the QE identity and the two CRLs.

Only fetching is done here: nothing is trusted until :mod:`attestcall.intel.verify.appraise` checks
signatures, chains and dates.
"""

from __future__ import annotations

import binascii
import datetime as dt
import json
import re
import urllib.parse
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from attestcall import fetch
from attestcall.diskcache import Cache
from attestcall.errors import CollateralError
from attestcall.intel.fetch.source import IssuedCrl, SignedText
from attestcall.intel.formats.pck import PckExtension, PckFormatError
from attestcall.intel.formats.quote import (
    CERT_PCK_CHAIN,
    CERT_QE_REPORT,
    ECDSA_PUBLIC_KEY_SIZE,
    ECDSA_SIGNATURE_SIZE,
    HEADER_SIZE,
    TEE_TYPE_SGX,
    TEE_TYPE_TDX,
    CertificationData,
    QeReportCertificationData,
    QuoteFormatError,
    QuoteHeader,
    Reader,
)
from attestcall.intel.formats.structs import SgxFormatError

INTEL_PCS_HOST = "api.trustedservices.intel.com"
INTEL_ROOT_CA_CRL_URL = "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der"
API_PATH = "certification/v4"

PCK_CRL_CHAIN_HEADERS = ("SGX-PCK-CRL-Issuer-Chain",)
TCB_INFO_CHAIN_HEADERS = ("TCB-Info-Issuer-Chain", "SGX-TCB-Info-Issuer-Chain")
QE_IDENTITY_CHAIN_HEADERS = ("SGX-Enclave-Identity-Issuer-Chain", "Enclave-Identity-Issuer-Chain")

TD_REPORT_10_SIZE = 584
SGX_REPORT_BODY_SIZE = 384
_PCK_CA_WORDS = {"Processor": "processor", "Platform": "platform"}
_DATE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z")


# ------------------------------------------------------------------------ the quote side


def _certification_data(quote: bytes) -> tuple[str, CertificationData]:
    """The TEE ("sgx"/"tdx") and the certification data that holds the PCK chain.

    Only what locating the collateral needs is checked (lengths, the nesting); verifying
    the quote is the verifier's job. Zero padding after the quote is tolerated, as quote
    buffers often carry it."""
    if len(quote) < HEADER_SIZE:
        raise QuoteFormatError(f"a quote is at least {HEADER_SIZE} bytes, got {len(quote)}")
    header = QuoteHeader.unpack(quote[:HEADER_SIZE])
    if header.version not in (3, 4, 5):
        raise QuoteFormatError(f"quote version {header.version} is not 3, 4 or 5")
    if header.tee_type not in (TEE_TYPE_SGX, TEE_TYPE_TDX):
        raise QuoteFormatError(f"unknown TEE type {header.tee_type:#x}")
    reader = Reader(quote, HEADER_SIZE)
    if header.version == 5:
        reader.u16("body type")
        body_size = reader.u32("body size")
    elif header.tee_type == TEE_TYPE_TDX:
        body_size = TD_REPORT_10_SIZE
    else:
        body_size = SGX_REPORT_BODY_SIZE
    reader.take(body_size, "report body")
    size = reader.u32("signature data length")
    signature_data = Reader(reader.take(size, "signature data"))
    if any(reader.take(reader.remaining, "padding")):
        raise QuoteFormatError("non-zero bytes after the signature data")
    signature_data.take(ECDSA_SIGNATURE_SIZE, "quote signature")
    signature_data.take(ECDSA_PUBLIC_KEY_SIZE, "attestation key")
    if header.version == 3:  # the QE report certification data sits inline
        certification = QeReportCertificationData.read(signature_data).certification_data
    else:
        certification = CertificationData.read(signature_data)
        if certification.cert_type == CERT_QE_REPORT:
            certification = certification.qe_report_certification().certification_data
    signature_data.expect_end("signature data")
    tee = "tdx" if header.tee_type == TEE_TYPE_TDX else "sgx"
    return tee, certification


def quote_platform(quote: bytes) -> tuple[str, str, str]:
    """``(tee, fmspc, ca)`` of a quote: "sgx"/"tdx", the FMSPC in upper-case hex, and
    "processor"/"platform" for the PCK CA that issued its PCK certificate."""
    try:
        tee, certification = _certification_data(bytes(quote))
        if certification.cert_type != CERT_PCK_CHAIN:
            raise CollateralError(
                f"the quote carries certification data type {certification.cert_type}, "
                "not the PCK certificate chain (type 5) needed to find its collateral"
            )
        pems = certification.pem_certificates()
        if not pems:
            raise CollateralError("the quote's PCK certificate chain is empty")
        pck = x509.load_pem_x509_certificate(pems[0])
        fmspc = PckExtension.from_certificate(pck).fmspc.hex().upper()
    except (SgxFormatError, PckFormatError) as exc:
        raise CollateralError(f"cannot find the quote's platform: {exc}") from exc
    except ValueError as exc:
        raise CollateralError(f"cannot read the quote's PCK certificate: {exc}") from exc
    return tee, fmspc, _pck_ca_type(pck)


def quote_chain(quote: bytes) -> list[x509.Certificate]:
    """The PCK certificate chain a quote carries (PCK first), or [] when it has none that
    can be read."""
    try:
        _, certification = _certification_data(bytes(quote))
        if certification.cert_type != CERT_PCK_CHAIN:
            return []
        return [x509.load_pem_x509_certificate(pem) for pem in certification.pem_certificates()]
    except (SgxFormatError, ValueError):
        return []


def _pck_ca_type(pck: x509.Certificate) -> str:
    names = pck.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)
    common_name = str(names[0].value) if names else ""
    for word, ca in _PCK_CA_WORDS.items():
        if f"PCK {word} CA" in common_name:
            return ca
    raise CollateralError(
        f"the PCK certificate's issuer {common_name!r} is neither the PCK Processor CA "
        "nor the PCK Platform CA"
    )


# ---------------------------------------------------------------------------- endpoints


def service_root(base_url: str) -> str:
    """The service's root URL: ``base_url`` without a trailing slash or API path (users
    often give the PCCS URL as ``https://host:8081/sgx/certification/v4/``)."""
    root = base_url.strip().rstrip("/")
    for tee in ("sgx", "tdx"):
        suffix = f"/{tee}/{API_PATH}"
        if root.endswith(suffix):
            root = root[: -len(suffix)]
    fetch.check_url(root)
    return root


def endpoints(base_url: str, tee: str, fmspc: str, ca: str) -> dict[str, str]:
    """The URLs fetched for a quote of ``tee`` with ``fmspc`` issued by PCK CA ``ca``."""
    root = service_root(base_url)
    query = urllib.parse.urlencode
    if urllib.parse.urlsplit(root).hostname == INTEL_PCS_HOST:
        root_crl = INTEL_ROOT_CA_CRL_URL
    else:
        root_crl = f"{root}/sgx/{API_PATH}/rootcacrl"
    return {
        "pck_crl": f"{root}/sgx/{API_PATH}/pckcrl?" + query({"ca": ca, "encoding": "der"}),
        "root_ca_crl": root_crl,
        "tcb_info": f"{root}/{tee}/{API_PATH}/tcb?" + query({"fmspc": fmspc}),
        "qe_identity": f"{root}/{tee}/{API_PATH}/qe/identity",
    }


# ------------------------------------------------------------------------------ fetching


class PcsSource:
    """A :class:`attestcall.intel.fetch.source.CollateralSource` asking the PCS/PCCS at
    ``base_url``; each answer is kept in ``cache`` (default: :class:`Cache` in the user's
    cache directory) until its own nextUpdate."""

    def __init__(
        self, base_url: str, *, cache: Cache | None = None, timeout: float = fetch.DEFAULT_TIMEOUT
    ) -> None:
        self.base_url = service_root(base_url)
        self.cache = cache
        self.timeout = timeout

    def _url(self, name: str, tee: str = "sgx", fmspc: str = "", ca: str = "processor") -> str:
        return endpoints(self.base_url, tee, fmspc, ca)[name]

    # Uncached fetches: the answer and when it stops being current.

    def fetch_pck_crl(self, ca: str) -> tuple[IssuedCrl, dt.datetime | None]:
        url = self._url("pck_crl", ca=ca)
        answer = fetch.get_retrying(url, timeout=self.timeout)
        der, expiry = _crl(answer.body, url, "PCK CRL")
        return IssuedCrl(der.hex(), _issuer_chain(answer, PCK_CRL_CHAIN_HEADERS)), expiry

    def fetch_root_ca_crl(self) -> tuple[str, dt.datetime | None]:
        url = self._url("root_ca_crl")
        der, expiry = _crl(fetch.get_retrying(url, timeout=self.timeout).body, url, "root CA CRL")
        return der.hex(), expiry

    def fetch_tcb_info(self, tee: str, fmspc: str) -> tuple[SignedText, dt.datetime]:
        url = self._url("tcb_info", tee, fmspc)
        answer = fetch.get_retrying(url, timeout=self.timeout, accept="application/json")
        text, signature = _signed_json(answer, "tcbInfo")
        signed = SignedText(text, signature, _issuer_chain(answer, TCB_INFO_CHAIN_HEADERS))
        return signed, _next_update(text, url)

    def fetch_qe_identity(self, tee: str) -> tuple[SignedText, dt.datetime]:
        url = self._url("qe_identity", tee)
        answer = fetch.get_retrying(url, timeout=self.timeout, accept="application/json")
        text, signature = _signed_json(answer, "enclaveIdentity")
        chain = _issuer_chain(answer, QE_IDENTITY_CHAIN_HEADERS)
        return SignedText(text, signature, chain), _next_update(text, url)

    # The source's questions, through the disk cache.

    def _cached(self, key: str, make: Any, rebuild: Any) -> Any:
        cache = self.cache if self.cache is not None else Cache()
        data = cache.get(key)
        if data is not None:
            try:
                return rebuild(json.loads(data))
            except (ValueError, TypeError, KeyError):
                pass  # a corrupt entry: fetch again
        value, expiry = make()
        if expiry is not None:
            cache.put(key, json.dumps(_plain(value)).encode(), expiry)
        return value

    def pck_crl(self, ca: str) -> IssuedCrl:
        return self._cached(  # type: ignore[no-any-return]
            self._url("pck_crl", ca=ca), lambda: self.fetch_pck_crl(ca),
            lambda v: IssuedCrl(_text(v["crl"]), _text(v["issuer_chain"])),
        )  # fmt: skip

    def root_ca_crl(self) -> str:
        return self._cached(  # type: ignore[no-any-return]
            self._url("root_ca_crl"), self.fetch_root_ca_crl, _text
        )

    def tcb_info(self, tee: str, fmspc: str) -> SignedText:
        return self._cached(  # type: ignore[no-any-return]
            self._url("tcb_info", tee, fmspc), lambda: self.fetch_tcb_info(tee, fmspc), _signed
        )

    def qe_identity(self, tee: str) -> SignedText:
        return self._cached(  # type: ignore[no-any-return]
            self._url("qe_identity", tee), lambda: self.fetch_qe_identity(tee), _signed
        )


def _plain(value: IssuedCrl | SignedText | str) -> Any:
    if isinstance(value, IssuedCrl):
        return {"crl": value.crl, "issuer_chain": value.issuer_chain}
    if isinstance(value, SignedText):
        return {"text": value.text, "signature": value.signature,
                "issuer_chain": value.issuer_chain}  # fmt: skip
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("not a string")
    return value


def _signed(value: Any) -> SignedText:
    return SignedText(_text(value["text"]), _text(value["signature"]),
                      _text(value["issuer_chain"]))  # fmt: skip


def fetch_collateral(
    base_url: str,
    quote: bytes,
    *,
    cache: Cache | None = None,
    timeout: float = fetch.DEFAULT_TIMEOUT,
) -> dict[str, str]:
    """The collateral of an SGX (v3) or TDX (v4/v5) ``quote`` from the PCS/PCCS at
    ``base_url``, in the QuoteCollateralV3 field names; CollateralError if it cannot be had.

    Served from ``cache`` (default: :class:`Cache` in the user's cache directory) as one
    entry while every part of it is before its nextUpdate."""
    tee, fmspc, ca = quote_platform(quote)
    urls = endpoints(base_url, tee, fmspc, ca)
    cache = cache if cache is not None else Cache()
    key = f"{urls['tcb_info']}#pckcrl-ca={ca}"
    cached = _from_cache(cache, key)
    if cached is not None:
        return cached

    source = PcsSource(base_url, cache=cache, timeout=timeout)
    pck_crl, pck_crl_expiry = source.fetch_pck_crl(ca)
    root_crl, root_crl_expiry = source.fetch_root_ca_crl()
    tcb_info, tcb_expiry = source.fetch_tcb_info(tee, fmspc)
    qe_identity, qe_expiry = source.fetch_qe_identity(tee)
    collateral = {
        "pck_crl_issuer_chain": pck_crl.issuer_chain,
        "root_ca_crl": root_crl,
        "pck_crl": pck_crl.crl,
        "tcb_info_issuer_chain": tcb_info.issuer_chain,
        "tcb_info": tcb_info.text,
        "tcb_info_signature": tcb_info.signature,
        "qe_identity_issuer_chain": qe_identity.issuer_chain,
        "qe_identity": qe_identity.text,
        "qe_identity_signature": qe_identity.signature,
    }
    expiries = [tcb_expiry, qe_expiry,
                *(e for e in (pck_crl_expiry, root_crl_expiry) if e is not None)]  # fmt: skip
    cache.put(key, json.dumps(collateral).encode(), min(expiries))
    return collateral


def _from_cache(cache: Cache, key: str) -> dict[str, str] | None:
    data = cache.get(key)
    if data is None:
        return None
    try:
        value = json.loads(data)
    except ValueError:
        return None
    fields = (
        "pck_crl_issuer_chain", "root_ca_crl", "pck_crl", "tcb_info_issuer_chain", "tcb_info",
        "tcb_info_signature", "qe_identity_issuer_chain", "qe_identity", "qe_identity_signature",
    )  # fmt: skip
    if not isinstance(value, dict) or set(value) != set(fields):
        return None
    if not all(isinstance(value[name], str) for name in fields):
        return None
    return {name: value[name] for name in fields}


# ----------------------------------------------------------------------- answer parsing


def _crl(body: bytes, url: str, what: str) -> tuple[bytes, dt.datetime | None]:
    """A CRL served as DER, PEM or hex (PCCS serves the root CA CRL hex-encoded): its DER
    and its nextUpdate."""
    der = body
    stripped = body.strip()
    if stripped.startswith(b"-----BEGIN X509 CRL-----"):
        try:
            crl = x509.load_pem_x509_crl(stripped)
        except ValueError:
            raise CollateralError(f"{url}: the {what} is not a valid PEM CRL") from None
        return crl.public_bytes(Encoding.DER), crl.next_update_utc
    if stripped[:1] != b"\x30" and re.fullmatch(rb"[0-9A-Fa-f]+", stripped or b"-"):
        try:
            der = binascii.unhexlify(stripped)
        except binascii.Error:
            raise CollateralError(f"{url}: the {what} is not valid hex") from None
    try:
        crl = x509.load_der_x509_crl(der)
    except ValueError:
        raise CollateralError(f"{url}: the {what} is not a DER CRL") from None
    return der, crl.next_update_utc


def _issuer_chain(answer: fetch.Response, names: tuple[str, ...]) -> str:
    for name in names:
        value = answer.header(name)
        if value is not None:
            break
    else:
        raise CollateralError(f"{answer.url}: the answer has no {names[0]} header")
    chain, certificates = decode_chain(value)
    if not certificates:
        raise CollateralError(f"{answer.url}: the {name} header is not a PEM certificate chain")
    return chain


def decode_chain(value: str) -> tuple[str, list[x509.Certificate]]:
    """An issuer-chain header's value (URL-encoded PEM): the PEM text and its certificates,
    ("", []) if it is not that."""
    try:
        chain = urllib.parse.unquote(value, errors="strict")
        return chain, x509.load_pem_x509_certificates(chain.encode())
    except ValueError:  # UnicodeError included
        return "", []


def _signed_json(answer: fetch.Response, member: str) -> tuple[str, str]:
    """The exact text of the body's top-level ``member`` object and its hex signature."""
    try:
        text = answer.body.decode("utf-8")
    except UnicodeDecodeError:
        raise CollateralError(f"{answer.url}: the answer is not UTF-8 text") from None
    try:
        spans = top_level_spans(text)
    except ValueError as exc:
        raise CollateralError(f"{answer.url}: the answer is not a JSON object: {exc}") from None
    except RecursionError:
        raise CollateralError(f"{answer.url}: the answer nests too deeply") from None
    if member not in spans or "signature" not in spans:
        raise CollateralError(f"{answer.url}: the answer lacks {member!r} or 'signature'")
    start, end = spans[member]
    signed = text[start:end]
    signature = json.loads(text[slice(*spans["signature"])])
    if not isinstance(json.loads(signed), dict):
        raise CollateralError(f"{answer.url}: {member!r} is not a JSON object")
    if not isinstance(signature, str) or not re.fullmatch(r"[0-9A-Fa-f]{128}", signature):
        raise CollateralError(f"{answer.url}: the signature is not 64 bytes of hex")
    return signed, signature.lower()


def top_level_spans(text: str) -> dict[str, tuple[int, int]]:
    """Where each member's value sits in the JSON object ``text``: name -> (start, end).

    ValueError if ``text`` is not exactly one JSON object or repeats a member name (a
    repeated name would make "the signed object" ambiguous)."""
    decoder = json.JSONDecoder()
    whitespace = re.compile(r"[ \t\n\r]*")

    def skip(index: int) -> int:
        return whitespace.match(text, index).end()  # type: ignore[union-attr]

    index = skip(0)
    if text[index : index + 1] != "{":
        raise ValueError("it does not start with '{'")
    index = skip(index + 1)
    spans: dict[str, tuple[int, int]] = {}
    if text[index : index + 1] == "}":
        index += 1
    else:
        while True:
            if text[index : index + 1] != '"':
                raise ValueError(f"expected a member name at offset {index}")
            name, index = decoder.raw_decode(text, index)
            index = skip(index)
            if text[index : index + 1] != ":":
                raise ValueError(f"expected ':' at offset {index}")
            start = skip(index + 1)
            _, end = decoder.raw_decode(text, start)
            if name in spans:
                raise ValueError(f"member {name!r} appears twice")
            spans[name] = (start, end)
            index = skip(end)
            separator = text[index : index + 1]
            index += 1
            if separator == "}":
                break
            if separator != ",":
                raise ValueError(f"expected ',' or '}}' at offset {index - 1}")
            index = skip(index)
    if skip(index) != len(text):
        raise ValueError(f"unexpected text after the object at offset {index}")
    return spans


def _next_update(signed: str, url: str) -> dt.datetime:
    document: Any = json.loads(signed)
    value = document.get("nextUpdate")
    if not isinstance(value, str) or not _DATE.fullmatch(value):
        raise CollateralError(f"{url}: the nextUpdate {value!r} is not an ISO 8601 UTC date")
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
