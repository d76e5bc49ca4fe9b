"""TDG.MR.REPORT on a simulated TDX module: :class:`SimulatedTdxModule` plays the CPU and
the TDX module for the TD, as :class:`attestcall.intel.sim.sgx.SimulatedCpu` does for SGX.

It writes a 1024-byte TDREPORT (see :mod:`.report`) whose TEE_TCB_INFO is the simulated
module's, whose TDINFO describes the calling TD, whose REPORTDATA is the caller's 64 bytes,
and whose MAC is keyed by the simulated CPU secret.
"""

from __future__ import annotations

import functools
import hashlib

from attestcall.intel.sim.tdx.identity import TdIdentity
from attestcall.intel.sim.tdx.report import build_report
from attestcall.intel.sim.tdx.state import TdxState


class SimulatedTdxModule:
    """TDG.MR.REPORT for TDs on the simulated platform."""

    def __init__(self, state: TdxState) -> None:
        self._secret = state.sgx.cpu_secret
        self.cpu_svn = state.sgx.cpu_svn
        self._tee_tcb_info = state.tee_tcb_info_bytes
        self._tee_tcb_info_hash = hashlib.sha384(self._tee_tcb_info).digest()

    def report(self, report_data: bytes, td: TdIdentity) -> bytes:
        """The TDREPORT ``td`` gets from TDG.MR.REPORT with ``report_data`` (64 bytes);
        TdReportError for REPORTDATA of another size."""
        td_info, td_info_hash = _td_info(td)
        return build_report(
            cpu_secret=self._secret, cpu_svn=self.cpu_svn, tee_tcb_info=self._tee_tcb_info,
            td_info=td_info, report_data=bytes(report_data),
            tee_tcb_info_hash=self._tee_tcb_info_hash, td_info_hash=td_info_hash,
        )  # fmt: skip


@functools.lru_cache(maxsize=64)
def _td_info(td: TdIdentity) -> tuple[bytes, bytes]:
    packed = td.td_info().pack()
    return packed, hashlib.sha384(packed).digest()
