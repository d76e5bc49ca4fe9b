"""Intel DCAP collateral in the ``QuoteCollateralV3`` shape, parsed into typed structures.

Fields (JSON object, all strings)::

    pck_crl_issuer_chain       PEM chain (PCK Platform/Processor CA, root)
    root_ca_crl, pck_crl       DER CRLs, hex
    tcb_info_issuer_chain      PEM chain (TCB signing certificate, root)
    tcb_info                   the exact signed JSON text of the TCB info (v3, SGX or TDX)
    tcb_info_signature         hex, raw ECDSA P-256 r||s over those exact bytes
    qe_identity_issuer_chain   PEM chain (TCB signing certificate, root)
    qe_identity                the exact signed JSON text of the QE identity (v2)
    qe_identity_signature      hex, raw r||s

Only parsing here: nothing is verified. The signed texts are kept as the bytes given
(``tcb_info_bytes``, ``qe_identity_bytes``) and their signatures must be checked over
those, never over a re-serialisation. Anything malformed raises :class:`CollateralError`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from operator import itemgetter
from pathlib import Path
from typing import Any

from cryptography import x509

from attestcall.errors import CollateralError
from attestcall.intel.verify.certs import Cert, from_x509, load_pem_chain

FIELDS = (
    "pck_crl_issuer_chain", "root_ca_crl", "pck_crl", "tcb_info_issuer_chain", "tcb_info",
    "tcb_info_signature", "qe_identity_issuer_chain", "qe_identity", "qe_identity_signature",
)  # fmt: skip

UP_TO_DATE = "UpToDate"
SW_HARDENING_NEEDED = "SWHardeningNeeded"
CONFIGURATION_NEEDED = "ConfigurationNeeded"
CONFIGURATION_AND_SW_HARDENING_NEEDED = "ConfigurationAndSWHardeningNeeded"
OUT_OF_DATE = "OutOfDate"
OUT_OF_DATE_CONFIGURATION_NEEDED = "OutOfDateConfigurationNeeded"
REVOKED = "Revoked"
TD_RELAUNCH_ADVISED = "TDRelaunchAdvised"
TD_RELAUNCH_ADVISED_CONFIGURATION_NEEDED = "TDRelaunchAdvisedConfigurationNeeded"

TCB_STATUSES = frozenset({
    UP_TO_DATE, SW_HARDENING_NEEDED, CONFIGURATION_NEEDED, CONFIGURATION_AND_SW_HARDENING_NEEDED,
    OUT_OF_DATE, OUT_OF_DATE_CONFIGURATION_NEEDED, REVOKED,
})  # fmt: skip
QE_STATUSES = frozenset({UP_TO_DATE, OUT_OF_DATE, REVOKED})

TCB_INFO_SGX = "SGX"
TCB_INFO_TDX = "TDX"
QE_ID_SGX = "QE"
QE_ID_TDX = "TD_QE"

_HEX = re.compile(r"[0-9A-Fa-f]*")


# ------------------------------------------------------------------------ typed structures


@dataclass(frozen=True)
class TcbLevel:
    """One entry of ``tcbLevels``: the minimum SVNs for ``status``."""

    sgx_components: tuple[int, ...]
    pce_svn: int
    tdx_components: tuple[int, ...] | None
    tcb_date: datetime
    status: str
    advisory_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModuleTcbLevel:
    """A TDX module identity's or the QE identity's TCB level: a minimum ISVSVN."""

    isv_svn: int
    tcb_date: datetime
    status: str
    advisory_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class TdxModule:
    """``tdxModule``: the expected MRSIGNERSEAM and masked SEAM attributes."""

    mrsigner: bytes
    attributes: bytes
    attributes_mask: bytes


@dataclass(frozen=True)
class TdxModuleIdentity:
    """One entry of ``tdxModuleIdentities`` (``id`` is ``TDX_<major version, 2 hex>``)."""

    id: str
    mrsigner: bytes
    attributes: bytes
    attributes_mask: bytes
    tcb_levels: tuple[ModuleTcbLevel, ...]


@dataclass(frozen=True)
class TcbInfo:
    """TCB info v3 (``id`` SGX or TDX)."""

    id: str
    version: int
    issue_date: datetime
    next_update: datetime
    fmspc: bytes
    pce_id: bytes
    tcb_type: int
    tcb_evaluation_data_number: int
    tcb_levels: tuple[TcbLevel, ...]
    tdx_module: TdxModule | None = None
    tdx_module_identities: tuple[TdxModuleIdentity, ...] = ()


@dataclass(frozen=True)
class QeIdentity:
    """QE identity v2 (``id`` QE for SGX, TD_QE for TDX)."""

    id: str
    version: int
    issue_date: datetime
    next_update: datetime
    tcb_evaluation_data_number: int
    miscselect: int
    miscselect_mask: int
    attributes: bytes
    attributes_mask: bytes
    mrsigner: bytes
    isv_prod_id: int
    tcb_levels: tuple[ModuleTcbLevel, ...]


# ------------------------------------------------------------------------ JSON helpers


class _Obj:
    """Typed access to a JSON object; every failure is a CollateralError naming ``where``."""

    def __init__(self, value: Any, where: str) -> None:
        if not isinstance(value, dict):
            raise CollateralError(f"{where} must be a JSON object")
        self.value = value
        self.where = where

    def get(self, key: str) -> Any:
        if key not in self.value:
            raise CollateralError(f"{self.where}: missing {key!r}")
        return self.value[key]

    def int(self, key: str, bits: int = 32) -> int:
        value = self.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 1 << bits:
            raise CollateralError(f"{self.where}: {key!r} must be an integer below 2**{bits}")
        return value

    def str(self, key: str) -> str:
        value = self.get(key)
        if not isinstance(value, str):
            raise CollateralError(f"{self.where}: {key!r} must be a string")
        return value

    def hex(self, key: str, size: int) -> bytes:
        text = self.str(key)
        if len(text) != 2 * size or not _HEX.fullmatch(text):
            raise CollateralError(f"{self.where}: {key!r} must be {size} bytes of hex")
        return bytes.fromhex(text)

    def date(self, key: str) -> datetime:
        return _date(self.str(key), f"{self.where}: {key!r}")

    def list(self, key: str) -> list[Any]:
        value = self.get(key)
        if not isinstance(value, list):
            raise CollateralError(f"{self.where}: {key!r} must be a list")
        return value

    def obj(self, key: str) -> _Obj:
        return _Obj(self.get(key), f"{self.where}.{key}")


def _date(text: str, where: Where, what: str = "") -> datetime:
    if not text.endswith("Z"):
        raise CollateralError(f"{where}{what} must be an RFC 3339 UTC time ending in Z")
    try:
        value = datetime.fromisoformat(text[:-1] + "+00:00")
    except ValueError as exc:
        raise CollateralError(f"{where}{what} is not an RFC 3339 time: {text!r}") from exc
    return value


# The level readers below are the one acceptance rule for a TCB info's or QE identity's
# levels (dozens per TCB info: most of its parsing). Each decides with a few type checks on
# the plain JSON values and builds the typed level; only a rejection spends time on naming
# the problem.

class _Place:
    """Where in the collateral a value sits, formatted only when an error names it (a TCB
    info has dozens of levels: naming each up front would cost more than reading it)."""

    __slots__ = ("base", "index", "suffix")

    def __init__(self, base: object, index: int | None = None, suffix: str = ""):
        self.base, self.index, self.suffix = base, index, suffix

    def child(self, suffix: str) -> _Place:
        return _Place(self, None, suffix)

    def __str__(self) -> str:
        index = "" if self.index is None else f"[{self.index}]"
        return f"{self.base}{index}{self.suffix}"

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


Where = str | _Place
_DICT, _INT = {dict}, {int}
_SVN = itemgetter("svn")


def _member(obj: dict[str, Any], key: str, where: Where) -> Any:
    try:
        return obj[key]
    except KeyError:
        raise CollateralError(f"{where}: missing {key!r}") from None


def _svns(tcb: dict[str, Any], key: str, where: Where) -> tuple[int, ...]:
    """The 16 ``{"svn": n}`` components of ``tcb[key]`` as SVNs in 0..255."""
    items = tcb.get(key)
    if type(items) is list and len(items) == 16 and set(map(type, items)) == _DICT:
        try:
            svns = tuple(map(_SVN, items))
        except KeyError:
            svns = ()
        if svns and set(map(type, svns)) == _INT and min(svns) >= 0 and max(svns) <= 255:
            return svns
    if key not in tcb:
        raise CollateralError(f"{where}: missing {key!r}")
    if not isinstance(items, list) or len(items) != 16:
        raise CollateralError(f"{where}.{key} must list 16 components")
    raise CollateralError(f"{where}.{key}: each component needs an svn in 0..255")


def _uint(obj: dict[str, Any], key: str, bits: int, where: Where) -> int:
    value = _member(obj, key, where)
    if type(value) is not int or not 0 <= value < 1 << bits:
        raise CollateralError(f"{where}: {key!r} must be an integer below 2**{bits}")
    return value


def _level_common(
    entry: Any, where: Where, allowed: frozenset[str]
) -> tuple[dict[str, Any], datetime, str, tuple[str, ...]]:
    """A level's ``tcb`` object, ``tcbDate``, ``tcbStatus`` and ``advisoryIDs``. The level
    is accepted by the checks of the first branch; :func:`_level_problem` only names what
    a refused one lacks."""
    if type(entry) is dict:
        tcb, text, status = entry.get("tcb"), entry.get("tcbDate"), entry.get("tcbStatus")
        ids = entry.get("advisoryIDs", ())
        if (type(tcb) is dict and type(text) is str and type(status) is str
                and status in allowed and (ids == () or type(ids) is list)
                and all(type(i) is str for i in ids)):  # fmt: skip
            return tcb, _date(text, where, ": 'tcbDate'"), status, tuple(ids)
    raise _level_problem(entry, where, allowed)


def _level_problem(entry: Any, where: Where, allowed: frozenset[str]) -> CollateralError:
    """What is wrong with a level :func:`_level_common` refused."""
    if type(entry) is not dict:
        return CollateralError(f"{where} must be a JSON object")
    for key in ("tcb", "tcbDate", "tcbStatus"):
        if key not in entry:
            return CollateralError(f"{where}: missing {key!r}")
    if type(entry["tcb"]) is not dict:
        return CollateralError(f"{where}.tcb must be a JSON object")
    if type(entry["tcbDate"]) is not str:
        return CollateralError(f"{where}: 'tcbDate' must be a string")
    status = entry["tcbStatus"]
    if type(status) is not str:
        return CollateralError(f"{where}: 'tcbStatus' must be a string")
    if status not in allowed:
        return CollateralError(f"{where}: unknown tcbStatus {status!r}")
    if type(entry.get("advisoryIDs")) is not list:
        return CollateralError(f"{where}: 'advisoryIDs' must be a list")
    return CollateralError(f"{where}: advisoryIDs must be strings")


def _tcb_level(entry: Any, i: int, is_tdx: bool) -> TcbLevel:
    where = _Place("tcb_info.tcbLevels", i)
    tcb, date, status, advisories = _level_common(entry, where, TCB_STATUSES)
    inner = where.child(".tcb")
    tdx = _svns(tcb, "tdxtcbcomponents", inner) if is_tdx else None
    sgx = _svns(tcb, "sgxtcbcomponents", inner)
    return TcbLevel(sgx, _uint(tcb, "pcesvn", 16, inner), tdx, date, status, advisories)


def _module_levels(
    items: list[Any], where: str, allowed: frozenset[str]
) -> tuple[ModuleTcbLevel, ...]:
    levels = []
    for i, item in enumerate(items):
        place = _Place(where, i)
        tcb, date, status, advisories = _level_common(item, place, allowed)
        levels.append(
            ModuleTcbLevel(_uint(tcb, "isvsvn", 16, place.child(".tcb")), date, status, advisories)
        )
    if not levels:
        raise CollateralError(f"{where} is empty")
    return tuple(levels)


def parse_tcb_info(text: str) -> TcbInfo:
    """Parse the TCB info JSON text (v3, SGX or TDX)."""
    try:
        root = _Obj(json.loads(text), "tcb_info")
    except (ValueError, RecursionError) as exc:
        raise CollateralError(f"tcb_info is not JSON: {exc}") from exc
    tcb_id = root.str("id")
    if tcb_id not in (TCB_INFO_SGX, TCB_INFO_TDX):
        raise CollateralError(f"tcb_info: unknown id {tcb_id!r}")
    version = root.int("version")
    if version != 3:
        raise CollateralError(f"tcb_info: version {version} is not supported (only 3)")
    is_tdx = tcb_id == TCB_INFO_TDX
    levels = [_tcb_level(item, i, is_tdx) for i, item in enumerate(root.list("tcbLevels"))]
    if not levels:
        raise CollateralError("tcb_info: tcbLevels is empty")
    module = None
    identities: list[TdxModuleIdentity] = []
    if is_tdx:
        m = root.obj("tdxModule")
        module = TdxModule(
            m.hex("mrsigner", 48), m.hex("attributes", 8), m.hex("attributesMask", 8)
        )
        if "tdxModuleIdentities" in root.value:
            for i, item in enumerate(root.list("tdxModuleIdentities")):
                ident = _Obj(item, f"tcb_info.tdxModuleIdentities[{i}]")
                identities.append(
                    TdxModuleIdentity(
                        ident.str("id"),
                        ident.hex("mrsigner", 48),
                        ident.hex("attributes", 8),
                        ident.hex("attributesMask", 8),
                        _module_levels(
                            ident.list("tcbLevels"), f"{ident.where}.tcbLevels", QE_STATUSES
                        ),
                    )
                )
    return TcbInfo(
        tcb_id, version, root.date("issueDate"), root.date("nextUpdate"), root.hex("fmspc", 6),
        root.hex("pceId", 2), root.int("tcbType"), root.int("tcbEvaluationDataNumber"),
        tuple(levels), module, tuple(identities),
    )  # fmt: skip


def parse_qe_identity(text: str) -> QeIdentity:
    """Parse the QE identity JSON text (v2, QE or TD_QE)."""
    try:
        root = _Obj(json.loads(text), "qe_identity")
    except (ValueError, RecursionError) as exc:
        raise CollateralError(f"qe_identity is not JSON: {exc}") from exc
    qe_id = root.str("id")
    if qe_id not in (QE_ID_SGX, QE_ID_TDX):
        raise CollateralError(f"qe_identity: unsupported id {qe_id!r}")
    version = root.int("version")
    if version != 2:
        raise CollateralError(f"qe_identity: version {version} is not supported (only 2)")
    return QeIdentity(
        qe_id, version, root.date("issueDate"), root.date("nextUpdate"),
        root.int("tcbEvaluationDataNumber"),
        int.from_bytes(root.hex("miscselect", 4), "big"),
        int.from_bytes(root.hex("miscselectMask", 4), "big"),
        root.hex("attributes", 16), root.hex("attributesMask", 16), root.hex("mrsigner", 32),
        root.int("isvprodid", 16),
        _module_levels(root.list("tcbLevels"), "qe_identity.tcbLevels", QE_STATUSES),
    )  # fmt: skip


def _pem_chain(text: str, name: str, seen: dict[str, tuple[Cert, ...]]) -> tuple[Cert, ...]:
    if text in seen:
        return seen[text]
    try:
        certs = load_pem_chain(text)
    except (ValueError, UnicodeEncodeError, x509.InvalidVersion) as exc:
        raise CollateralError(f"{name} is not a PEM certificate chain: {exc}") from exc
    if len(certs) < 2:
        raise CollateralError(f"{name} must hold a signing certificate and its root")
    seen[text] = certs
    return certs


def _hex(text: str, name: str) -> bytes:
    if not _HEX.fullmatch(text) or len(text) % 2:
        raise CollateralError(f"{name} is not hex")
    return bytes.fromhex(text)


def _crl(text: str, name: str) -> tuple[bytes, x509.CertificateRevocationList]:
    der = _hex(text, name)
    try:
        return der, x509.load_der_x509_crl(der)
    except ValueError as exc:
        raise CollateralError(f"{name} is not a DER CRL: {exc}") from exc


def _signature(text: str, name: str) -> bytes:
    raw = _hex(text, name)
    if len(raw) != 64:
        raise CollateralError(f"{name} must be a 64-byte raw ECDSA P-256 signature (r||s)")
    return raw


# ------------------------------------------------------------------------ the collateral


@dataclass(frozen=True)
class Collateral:
    """Parsed collateral. ``key`` is the exact input text of every field (a cache key)."""

    key: tuple[str, ...]
    pck_crl_issuer_chain: tuple[x509.Certificate, ...] = field(repr=False)
    root_ca_crl_der: bytes = field(repr=False)
    root_ca_crl: x509.CertificateRevocationList = field(repr=False)
    pck_crl_der: bytes = field(repr=False)
    pck_crl: x509.CertificateRevocationList = field(repr=False)
    tcb_info_issuer_chain: tuple[x509.Certificate, ...] = field(repr=False)
    tcb_info_bytes: bytes = field(repr=False)
    tcb_info: TcbInfo
    tcb_info_signature: bytes = field(repr=False)
    qe_identity_issuer_chain: tuple[x509.Certificate, ...] = field(repr=False)
    qe_identity_bytes: bytes = field(repr=False)
    qe_identity: QeIdentity
    qe_identity_signature: bytes = field(repr=False)
    # The three issuer chains (PCK CRL, TCB info, QE identity) as parsed certificates.
    parsed: tuple[tuple[Cert, ...], ...] = field(default=(), repr=False)

    def parsed_chains(self) -> tuple[tuple[Cert, ...], ...]:
        """The PCK CRL, TCB info and QE identity issuer chains as parsed certificates."""
        chains = (
            self.pck_crl_issuer_chain, self.tcb_info_issuer_chain, self.qe_identity_issuer_chain,
        )  # fmt: skip
        parsed = self.parsed
        if len(parsed) == 3 and all(
            len(mine) == len(theirs) and all(a.x509 is b for a, b in zip(mine, theirs, strict=True))
            for mine, theirs in zip(parsed, chains, strict=True)
        ):
            return parsed
        return tuple(tuple(from_x509(cert) for cert in chain) for chain in chains)

    def __hash__(self) -> int:
        return hash(self.key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Collateral) and self.key == other.key

    @classmethod
    def load(cls, source: str | bytes | Path | dict[str, Any]) -> Collateral:
        """From a path, the JSON text or bytes, or an already-parsed dict."""
        if isinstance(source, dict):
            return cls.from_dict(source)
        if isinstance(source, Path):
            try:
                source = source.read_bytes()
            except OSError as exc:
                raise CollateralError(f"cannot read collateral: {exc}") from exc
        if isinstance(source, str) and not source.lstrip().startswith("{"):
            try:
                source = Path(source).read_bytes()
            except OSError as exc:
                raise CollateralError(f"cannot read collateral {source!r}: {exc}") from exc
        try:
            data = json.loads(source)
        except (ValueError, RecursionError) as exc:
            raise CollateralError(f"collateral is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise CollateralError("collateral must be a JSON object")
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Collateral:
        missing = [name for name in FIELDS if name not in data]
        if missing:
            raise CollateralError(f"collateral lacks {', '.join(missing)}")
        values = tuple(data[name] for name in FIELDS)
        for name, value in zip(FIELDS, values, strict=True):
            if not isinstance(value, str):
                raise CollateralError(f"collateral field {name} must be a string")
        f = dict(zip(FIELDS, values, strict=True))
        root_der, root_crl = _crl(f["root_ca_crl"], "root_ca_crl")
        pck_der, pck_crl = _crl(f["pck_crl"], "pck_crl")
        try:
            tcb_bytes = f["tcb_info"].encode("utf-8")
            qe_bytes = f["qe_identity"].encode("utf-8")
        except UnicodeEncodeError as exc:
            raise CollateralError(f"signed JSON text is not UTF-8: {exc}") from exc
        seen: dict[str, tuple[Cert, ...]] = {}
        crl_chain = _pem_chain(f["pck_crl_issuer_chain"], "pck_crl_issuer_chain", seen)
        tcb_chain = _pem_chain(f["tcb_info_issuer_chain"], "tcb_info_issuer_chain", seen)
        tcb_info = parse_tcb_info(f["tcb_info"])
        tcb_signature = _signature(f["tcb_info_signature"], "tcb_info_signature")
        qe_chain = _pem_chain(f["qe_identity_issuer_chain"], "qe_identity_issuer_chain", seen)
        qe_identity = parse_qe_identity(f["qe_identity"])
        qe_signature = _signature(f["qe_identity_signature"], "qe_identity_signature")
        return cls(
            key=values,
            pck_crl_issuer_chain=tuple(cert.x509 for cert in crl_chain),
            root_ca_crl_der=root_der,
            root_ca_crl=root_crl,
            pck_crl_der=pck_der,
            pck_crl=pck_crl,
            tcb_info_issuer_chain=tuple(cert.x509 for cert in tcb_chain),
            tcb_info_bytes=tcb_bytes,
            tcb_info=tcb_info,
            tcb_info_signature=tcb_signature,
            qe_identity_issuer_chain=tuple(cert.x509 for cert in qe_chain),
            qe_identity_bytes=qe_bytes,
            qe_identity=qe_identity,
            qe_identity_signature=qe_signature,
            parsed=(crl_chain, tcb_chain, qe_chain),
        )
