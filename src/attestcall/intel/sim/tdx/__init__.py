"""A simulated Intel TDX machine that follows the real flow, byte for byte.

One concept a module:

- :mod:`.report`: TDREPORT_STRUCT (REPORTMACSTRUCT, TEE_TCB_INFO, TDINFO) and its MAC.
- :mod:`.identity`: :class:`TdIdentity`, what TDINFO says about a TD (MRTD from the payload).
- :mod:`.state`: the TDX-only state under ``sim_home()/tdx`` (TD QE attestation key, TDX
  module identity, TDX TCB info, TD QE identity); the PCK hierarchy is the SGX simulator's.
- :mod:`.module`: :class:`SimulatedTdxModule`, TDG.MR.REPORT (the trusted side).
- :mod:`.quote_service`: :class:`TdQuotingEnclave`, the host's quote service (TD QE).
- :mod:`.collateral`: TDX TCB info and TD QE identity signed as Intel's PCS serves them.

Its state is the ``tdx`` folder of the simulated-platform home (the TDX plugin record's
``sim_state``).
"""

from attestcall.intel.sim.tdx.identity import (
    DEFAULT_TD_ATTRIBUTES,
    DEFAULT_XFAM,
    TdIdentity,
    measure_payload,
)
from attestcall.intel.sim.tdx.module import SimulatedTdxModule
from attestcall.intel.sim.tdx.quote_service import (
    QE_AUTH_DATA,
    QUOTE_VERSIONS,
    ReportRejected,
    TdQuotingEnclave,
)
from attestcall.intel.sim.tdx.report import (
    TDREPORT_SIZE,
    TdInfo,
    TdReport,
    TdReportError,
    TeeTcbInfo,
)
from attestcall.intel.sim.tdx.state import (
    PLATFORM,
    TdxState,
    create_state,
    describe_state,
    load_state,
    read_state,
)

__all__ = [
    "DEFAULT_TD_ATTRIBUTES",
    "DEFAULT_XFAM",
    "PLATFORM",
    "QE_AUTH_DATA",
    "QUOTE_VERSIONS",
    "TDREPORT_SIZE",
    "ReportRejected",
    "SimulatedTdxModule",
    "TdIdentity",
    "TdInfo",
    "TdQuotingEnclave",
    "TdReport",
    "TdReportError",
    "TdxState",
    "TeeTcbInfo",
    "create_state",
    "describe_state",
    "load_state",
    "measure_payload",
    "read_state",
]
