"""The identity of a simulated TD: what TDG.MR.REPORT puts in TDINFO about it.

MRTD of a simulated TD is SHA-384(``b"attestcall-sim MRTD v1\\0"`` || payload bytes): a
stand-in for the real page-by-page build measurement, distinct per payload. Everything else
defaults to what a plain production TD reports: TD attributes with SEPT_VE_DISABLE and
DEBUG off, XFAM 0x206E7 (x87, SSE, AVX, AVX-512, PK, AMX as Linux guests enable them), and
zero MRCONFIGID, MROWNER, MROWNERCONFIG, RTMRs and SERVTD_HASH.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from typing import Any

from attestcall.intel.formats.tdx_quote import TD_ATTR_DEBUG, TD_ATTR_SEPT_VE_DISABLE
from attestcall.intel.sim.tdx.report import MEASUREMENT_SIZE, TdInfo

DEFAULT_TD_ATTRIBUTES = TD_ATTR_SEPT_VE_DISABLE  # 0x10000000, DEBUG off
DEFAULT_XFAM = 0x206E7
_MRTD_LABEL = b"attestcall-sim MRTD v1\x00"
_ZERO = bytes(MEASUREMENT_SIZE)


@dataclass(frozen=True)
class TdIdentity:
    """What TDINFO says about the TD. Every measurement is 48 bytes."""

    mrtd: bytes
    td_attributes: int = DEFAULT_TD_ATTRIBUTES
    xfam: int = DEFAULT_XFAM
    mrconfigid: bytes = _ZERO
    mrowner: bytes = _ZERO
    mrownerconfig: bytes = _ZERO
    rtmr0: bytes = _ZERO
    rtmr1: bytes = _ZERO
    rtmr2: bytes = _ZERO
    rtmr3: bytes = _ZERO
    servtd_hash: bytes = _ZERO

    def __post_init__(self) -> None:
        self.td_info()  # validates every field (TdReportError)

    @property
    def debug(self) -> bool:
        return bool(self.td_attributes & TD_ATTR_DEBUG)

    @classmethod
    def for_payload(cls, payload: bytes, **overrides: Any) -> TdIdentity:
        """The identity of a TD built from ``payload``; keyword overrides as :meth:`replace`."""
        return cls(measure_payload(payload)).replace(**overrides)

    def replace(self, **overrides: Any) -> TdIdentity:
        """A copy with fields replaced; ``None`` keeps a field, ``debug`` sets or clears the
        DEBUG attribute. Unknown names raise TypeError, bad values TdReportError."""
        debug = overrides.pop("debug", None)
        changes = {name: value for name, value in overrides.items() if value is not None}
        if debug is not None:
            flags = changes.get("td_attributes", self.td_attributes)
            flags = (flags | TD_ATTR_DEBUG) if debug else (flags & ~TD_ATTR_DEBUG)
            changes["td_attributes"] = flags
        return dataclasses.replace(self, **changes) if changes else self

    def td_info(self) -> TdInfo:
        return TdInfo(
            attributes=self.td_attributes,
            xfam=self.xfam,
            mr_td=self.mrtd,
            mr_config_id=self.mrconfigid,
            mr_owner=self.mrowner,
            mr_owner_config=self.mrownerconfig,
            rtmrs=(self.rtmr0, self.rtmr1, self.rtmr2, self.rtmr3),
            servtd_hash=self.servtd_hash,
        )


def measure_payload(payload: bytes) -> bytes:
    """The simulated MRTD of a TD running ``payload``."""
    return hashlib.sha384(_MRTD_LABEL + bytes(payload)).digest()
