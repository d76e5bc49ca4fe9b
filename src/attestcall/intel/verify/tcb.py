"""TCB evaluation against Intel's TCB info and QE identity (what Intel's QVL defines).

Platform TCB level (SGX): the first level of ``tcbLevels`` (Intel publishes them highest
first) whose 16 SGX component SVNs are each <= the PCK certificate's and whose PCESVN is
<= the certificate's. TDX adds: the TD report's TEE_TCB_SVN must be >= the level's 16
``tdxtcbcomponents`` (bytes 0 and 1 skipped when TEE_TCB_SVN[1], the TDX module major
version, is not 0: the module identity judges those), and the TDX module is checked
against ``tdxModule`` or, for a module major version > 0, the ``tdxModuleIdentities``
entry ``TDX_<version as 2 hex>`` (MRSIGNERSEAM, masked SEAMATTRIBUTES, ISVSVN =
TEE_TCB_SVN[0] against its levels). TD 1.5 reports add the relaunch advice.

QE identity: MRSIGNER and ISVPRODID equal, MISCSELECT and ATTRIBUTES equal under their
masks, then the first level whose ISVSVN <= the QE's gives the QE TCB status.

Statuses merge as Intel's QVL does: a module or QE that is OutOfDate turns UpToDate /
SWHardeningNeeded into OutOfDate and the two Configuration statuses into
OutOfDateConfigurationNeeded; a Revoked module or QE makes the result Revoked. Advisory
ids are those of the selected platform level, module level and QE level, in that order,
without repeats.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from attestcall import der
from attestcall.intel.formats.collateral import (
    CONFIGURATION_AND_SW_HARDENING_NEEDED,
    CONFIGURATION_NEEDED,
    OUT_OF_DATE,
    OUT_OF_DATE_CONFIGURATION_NEEDED,
    REVOKED,
    SW_HARDENING_NEEDED,
    TD_RELAUNCH_ADVISED,
    TD_RELAUNCH_ADVISED_CONFIGURATION_NEEDED,
    UP_TO_DATE,
    ModuleTcbLevel,
    QeIdentity,
    TcbInfo,
    TcbLevel,
    TdxModuleIdentity,
)
from attestcall.intel.formats.pck import (
    OID_FMSPC,
    OID_PCE_ID,
    OID_PCESVN,
    OID_TCB,
    PckFormatError,
    tcb_comp_oid,
)
from attestcall.intel.formats.structs import ReportBody

_CONFIG_STATUSES = frozenset({
    CONFIGURATION_NEEDED, OUT_OF_DATE_CONFIGURATION_NEEDED,
    CONFIGURATION_AND_SW_HARDENING_NEEDED, TD_RELAUNCH_ADVISED_CONFIGURATION_NEEDED,
})  # fmt: skip


@dataclass(frozen=True)
class TcbResult:
    """The outcome of an evaluation: a status and advisories, or the problems found."""

    status: str | None
    advisories: tuple[str, ...] = ()
    problems: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class TdxTcb:
    """What the TD report says about the TDX module (TEE_TCB_SVN, MRSIGNERSEAM, ...)."""

    tee_tcb_svn: bytes
    mr_signer_seam: bytes
    seam_attributes: bytes
    tee_tcb_svn2: bytes | None = None


@dataclass(frozen=True)
class PlatformTcb:
    """What TCB evaluation needs from a PCK certificate's SGX extension."""

    fmspc: bytes
    pce_id: bytes
    comp_svns: tuple[int, ...]
    pce_svn: int


def _oid(dotted: str) -> bytes:
    return der.encode_oid(dotted)[2:]


_OID_TCB, _OID_PCE_ID, _OID_FMSPC, _OID_PCESVN = map(
    _oid, (OID_TCB, OID_PCE_ID, OID_FMSPC, OID_PCESVN)
)
_OID_COMPS = tuple(_oid(tcb_comp_oid(i)) for i in range(1, 17))


def _tlv(data: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """(tag, content start, content end) of the DER element at ``pos``."""
    if pos + 2 > end:
        raise PckFormatError("SGX extension: truncated element")
    tag, size = data[pos], data[pos + 1]
    pos += 2
    if size & 0x80:
        count = size & 0x7F
        if not 1 <= count <= 3 or pos + count > end:
            raise PckFormatError("SGX extension: bad length")
        size = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    if pos + size > end:
        raise PckFormatError("SGX extension: element overruns its container")
    return tag, pos, pos + size


def _entries(data: bytes, start: int, end: int) -> dict[bytes, tuple[int, int, int]]:
    """SEQUENCE { OID, value } entries between start and end, by OID content bytes."""
    out = {}
    pos = start
    while pos < end:
        tag, s, e = _tlv(data, pos, end)
        if tag != der.SEQUENCE:
            raise PckFormatError("SGX extension: an entry is not a SEQUENCE")
        otag, os_, oe = _tlv(data, s, e)
        if otag != der.OBJECT_IDENTIFIER:
            raise PckFormatError("SGX extension: an entry does not start with an OID")
        value = _tlv(data, oe, e)
        if value[2] != e:
            raise PckFormatError("SGX extension: an entry has trailing bytes")
        oid = data[os_:oe]
        if oid in out:
            raise PckFormatError("SGX extension: duplicate entry")
        out[oid] = value
        pos = e
    return out


def _value(data: bytes, entries: dict[bytes, tuple[int, int, int]], oid: bytes, tag: int) -> bytes:
    if oid not in entries:
        raise PckFormatError("SGX extension: a required entry is missing")
    got, s, e = entries[oid]
    if got != tag:
        raise PckFormatError("SGX extension: an entry has the wrong type")
    return data[s:e]


def _uint(content: bytes, limit: int) -> int:
    if (
        not content
        or content[0] & 0x80
        or (len(content) > 1 and content[0] == 0 and content[1] < 0x80)
    ):
        raise PckFormatError("SGX extension: not a minimal non-negative INTEGER")
    value = int.from_bytes(content, "big")
    if value > limit:
        raise PckFormatError("SGX extension: SVN out of range")
    return value


def platform_tcb(extension_value: bytes) -> PlatformTcb:
    """FMSPC, PCE-ID, the 16 TCB component SVNs and PCESVN from the SGX extension's value.

    A lean reader of the fields TCB evaluation needs (the full strict decoder is
    :class:`attestcall.intel.formats.pck.PckExtension`, about ten times slower); PckFormatError if
    they are missing or malformed.
    """
    data = bytes(extension_value)
    tag, start, end = _tlv(data, 0, len(data))
    if tag != der.SEQUENCE or end != len(data):
        raise PckFormatError("SGX extension: not one SEQUENCE")
    top = _entries(data, start, end)
    tcb = _value(data, top, _OID_TCB, der.SEQUENCE)
    inner = _entries(tcb, 0, len(tcb))
    comps = tuple(_uint(_value(tcb, inner, oid, der.INTEGER), 255) for oid in _OID_COMPS)
    pce_svn = _uint(_value(tcb, inner, _OID_PCESVN, der.INTEGER), 0xFFFF)
    pce_id = _value(data, top, _OID_PCE_ID, der.OCTET_STRING)
    fmspc = _value(data, top, _OID_FMSPC, der.OCTET_STRING)
    if len(pce_id) != 2 or len(fmspc) != 6:
        raise PckFormatError("SGX extension: PCE-ID must be 2 bytes and FMSPC 6")
    return PlatformTcb(fmspc, pce_id, comps, pce_svn)


def merge_advisories(*groups: tuple[str, ...]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for group in groups:
        for advisory in group:
            seen.setdefault(advisory, None)
    return tuple(seen)


def converge(status: str, other: str) -> str:
    """Merge a platform status with a QE or TDX module status (UpToDate/OutOfDate/Revoked)."""
    if other == REVOKED:
        return REVOKED
    if other == OUT_OF_DATE:
        if status in (UP_TO_DATE, SW_HARDENING_NEEDED):
            return OUT_OF_DATE
        if status in (CONFIGURATION_NEEDED, CONFIGURATION_AND_SW_HARDENING_NEEDED):
            return OUT_OF_DATE_CONFIGURATION_NEEDED
    return status


def _ge(have: bytes | tuple[int, ...], need: tuple[int, ...], start: int = 0) -> bool:
    return all(have[i] >= need[i] for i in range(start, len(need)))


def match_sgx_level(tcb_info: TcbInfo, comp_svns: tuple[int, ...], pce_svn: int) -> TcbLevel | None:
    """The first level the PCK certificate's TCB (components, PCESVN) meets, or None."""
    for level in tcb_info.tcb_levels:
        if pce_svn >= level.pce_svn and _ge(comp_svns, level.sgx_components):
            return level
    return None


def match_tdx_level(
    tcb_info: TcbInfo, comp_svns: tuple[int, ...], pce_svn: int, tee_tcb_svn: bytes
) -> TcbLevel | None:
    """The first level met by the PCK TCB and the TD's TEE_TCB_SVN, or None."""
    start = 2 if tee_tcb_svn[1] > 0 else 0
    for level in tcb_info.tcb_levels:
        if pce_svn < level.pce_svn or not _ge(comp_svns, level.sgx_components):
            continue
        if level.tdx_components is not None and _ge(tee_tcb_svn, level.tdx_components, start):
            return level
    return None


def _find_identity(tcb_info: TcbInfo, version: int) -> TdxModuleIdentity | None:
    wanted = f"TDX_{version:02X}"
    for identity in tcb_info.tdx_module_identities:
        if identity.id.upper() == wanted:
            return identity
    return None


def _masked_equal(value: bytes, expected: bytes, mask: bytes) -> bool:
    return all((v & m) == (e & m) for v, e, m in zip(value, expected, mask, strict=True))


def _module_level(levels: tuple[ModuleTcbLevel, ...], isv_svn: int) -> ModuleTcbLevel | None:
    for level in levels:
        if isv_svn >= level.isv_svn:
            return level
    return None


def evaluate_qe(identity: QeIdentity, qe_report: ReportBody) -> TcbResult:
    """Check the QE report against the QE identity; the QE TCB status and its advisories."""
    problems = []
    if qe_report.mr_signer != identity.mrsigner:
        problems.append(
            f"QE MRSIGNER {qe_report.mr_signer.hex()} is not the QE identity's "
            f"{identity.mrsigner.hex()}"
        )
    if qe_report.isv_prod_id != identity.isv_prod_id:
        problems.append(
            f"QE ISVPRODID {qe_report.isv_prod_id} is not the QE identity's {identity.isv_prod_id}"
        )
    if (
        qe_report.misc_select & identity.miscselect_mask
        != identity.miscselect & identity.miscselect_mask
    ):
        problems.append(
            f"QE MISCSELECT {qe_report.misc_select:#010x} does not match the QE identity"
        )
    if not _masked_equal(qe_report.attributes, identity.attributes, identity.attributes_mask):
        problems.append(f"QE ATTRIBUTES {qe_report.attributes.hex()} do not match the QE identity")
    if problems:
        return TcbResult(None, (), tuple(problems))
    level = _module_level(identity.tcb_levels, qe_report.isv_svn)
    if level is None:
        return TcbResult(
            None,
            (),
            (
                f"QE ISVSVN {qe_report.isv_svn} is below every QE identity "
                "TCB level (TCB not supported)",
            ),
        )
    return TcbResult(level.status, level.advisory_ids)


def _evaluate_module(tcb_info: TcbInfo, tdx: TdxTcb) -> tuple[TcbResult, TdxModuleIdentity | None]:
    """Check the TDX module (MRSIGNERSEAM, SEAMATTRIBUTES, module TCB level)."""
    module = tcb_info.tdx_module
    if module is None:
        return TcbResult(None, (), ("TDX TCB info has no tdxModule",)), None
    version = tdx.tee_tcb_svn[1]
    identity = None
    mrsigner, attributes, mask = module.mrsigner, module.attributes, module.attributes_mask
    if version > 0:
        identity = _find_identity(tcb_info, version)
        if identity is None:
            problem = f"TCB info has no TDX module identity TDX_{version:02X} (TDX module mismatch)"
            return TcbResult(None, (), (problem,)), None
        mrsigner, attributes, mask = (
            identity.mrsigner,
            identity.attributes,
            identity.attributes_mask,
        )
    problems = []
    if tdx.mr_signer_seam != mrsigner:
        problems.append(
            f"MRSIGNERSEAM {tdx.mr_signer_seam.hex()} is not the TCB info's TDX module "
            "signer (TDX module mismatch)"
        )
    if not _masked_equal(tdx.seam_attributes, attributes, mask):
        problems.append(
            f"SEAMATTRIBUTES {tdx.seam_attributes.hex()} do not match the TCB info's "
            "TDX module (TDX module mismatch)"
        )
    if problems:
        return TcbResult(None, (), tuple(problems)), identity
    if identity is None:
        return TcbResult(UP_TO_DATE), None
    level = _module_level(identity.tcb_levels, tdx.tee_tcb_svn[0])
    if level is None:
        problem = (
            f"TDX module ISVSVN {tdx.tee_tcb_svn[0]} is below every {identity.id} TCB level "
            "(TCB not supported)"
        )
        return TcbResult(None, (), (problem,)), identity
    return TcbResult(level.status, level.advisory_ids), identity


def _relaunch(
    tcb_info: TcbInfo, tee_tcb_svn2: bytes, sgx_status: str, tdx_status: str, module_status: str,
    qe_status: str | None,
) -> str:  # fmt: skip
    """TD 1.5: advise relaunching a TD whose TEE_TCB_SVN2 already meets the latest TCB."""
    platform_ok = (UP_TO_DATE, SW_HARDENING_NEEDED, CONFIGURATION_NEEDED,
                   CONFIGURATION_AND_SW_HARDENING_NEEDED)  # fmt: skip
    if qe_status not in (None, UP_TO_DATE) or sgx_status not in platform_ok:
        return tdx_status
    if tdx_status not in (OUT_OF_DATE, OUT_OF_DATE_CONFIGURATION_NEEDED):
        return tdx_status
    if module_status != OUT_OF_DATE:
        return tdx_status
    latest = tcb_info.tcb_levels[0]
    latest_tdx = latest.tdx_components or (0,) * 16
    if tee_tcb_svn2[1] == 0:
        module_ok = tee_tcb_svn2[0] >= latest_tdx[0]
    else:
        identity = _find_identity(tcb_info, tee_tcb_svn2[1])
        if identity is None:
            return tdx_status
        module_ok = tee_tcb_svn2[0] >= identity.tcb_levels[0].isv_svn
    if module_ok and tee_tcb_svn2[2] >= latest_tdx[2]:
        if sgx_status in _CONFIG_STATUSES or tdx_status in _CONFIG_STATUSES:
            return TD_RELAUNCH_ADVISED_CONFIGURATION_NEEDED
        return TD_RELAUNCH_ADVISED
    return tdx_status


def evaluate(
    tcb_info: TcbInfo,
    comp_svns: tuple[int, ...],
    pce_svn: int,
    qe: TcbResult,
    tdx: TdxTcb | None = None,
) -> TcbResult:
    """The combined TCB status: platform level (+ TDX module) merged with the QE's status.

    ``qe`` is :func:`evaluate_qe`'s result; its problems are carried over.
    """
    sgx_level = match_sgx_level(tcb_info, comp_svns, pce_svn)
    if sgx_level is None:
        return TcbResult(
            None,
            (),
            qe.problems
            + (
                f"no TCB level of the TCB info matches the PCK certificate's TCB "
                f"(components {list(comp_svns)}, PCESVN {pce_svn}): TCB not supported",
            ),
        )
    if tdx is None:
        status = sgx_level.status
        advisories = sgx_level.advisory_ids
        module_advisories: tuple[str, ...] = ()
    else:
        tdx_level = match_tdx_level(tcb_info, comp_svns, pce_svn, tdx.tee_tcb_svn)
        if tdx_level is None:
            return TcbResult(
                None,
                (),
                qe.problems
                + (
                    f"no TDX TCB level matches TEE_TCB_SVN {tdx.tee_tcb_svn.hex()}: "
                    "TCB not supported",
                ),
            )
        module, _ = _evaluate_module(tcb_info, tdx)
        if module.status is None:
            return TcbResult(None, (), qe.problems + module.problems)
        status = converge(tdx_level.status, module.status)
        if tdx.tee_tcb_svn2 is not None and status != REVOKED:
            status = _relaunch(
                tcb_info, tdx.tee_tcb_svn2, sgx_level.status, status, module.status, qe.status
            )
        advisories = tdx_level.advisory_ids
        module_advisories = module.advisories
    if qe.status is None:
        return TcbResult(None, (), qe.problems)
    return TcbResult(
        converge(status, qe.status), merge_advisories(advisories, module_advisories, qe.advisories)
    )
