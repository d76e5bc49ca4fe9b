"""A simulated Intel SGX machine that follows the real DCAP flow, byte for byte.

One concept a module, all re-exported here:

- :mod:`.identity`: :class:`EnclaveIdentity`, what EREPORT says about an enclave, and how
  the simulation measures MRENCLAVE and MRSIGNER.
- :mod:`.state`: the simulated platform on disk (:class:`SgxState`, :func:`load_state`,
  :func:`create_state`, :func:`describe_state`), its file names, TCB levels and QE identity.
- :mod:`.certs`: issuing the Intel-shaped certificate chain (Root CA -> PCK Platform CA ->
  PCK, and TCB signing), every subject SIMULATED.
- :mod:`.cpu`: :class:`SimulatedCpu`, EREPORT and the report key derivation.
- :mod:`.qe`: :class:`QuotingEnclave`, the DCAP quoting enclave (QE3) signing quotes v3.

Its state is the ``sgx`` folder of the simulated-platform home (the SGX plugin record's
``sim_state``).
"""

from attestcall.intel.sim.sgx.cpu import EreportError, SimulatedCpu
from attestcall.intel.sim.sgx.identity import (
    DEFAULT_ATTRIBUTE_FLAGS,
    DEFAULT_XFRM,
    QE_ATTRIBUTE_FLAGS,
    REPORT_DATA_SIZE,
    EnclaveIdentity,
    measure_payload,
    mrsigner_of,
)
from attestcall.intel.sim.sgx.qe import QE_AUTH_DATA, QuotingEnclave, ReportRejected
from attestcall.intel.sim.sgx.state import (
    ATTESTATION_KEY,
    CPU_SECRET,
    ENCLAVE_SIGNER_KEY,
    ENCLAVE_SIGNER_PUBLIC,
    PCK_CERT,
    PCK_KEY,
    PLATFORM,
    PLATFORM_CA_CERT,
    PLATFORM_CA_KEY,
    PLATFORM_CRL_URL,
    PLATFORM_JSON,
    QE_IDENTITY_JSON,
    ROOT_CERT,
    ROOT_CRL_URL,
    ROOT_KEY,
    SIM_CRL_BASE,
    SIM_FMSPC,
    SIM_PCE_ID,
    SIM_PCE_SVN,
    SIM_QE_SVN,
    SIM_TCB_COMP_SVNS,
    TCB_LEVELS_JSON,
    TCB_SIGNING_CERT,
    TCB_SIGNING_KEY,
    SgxState,
    create_state,
    describe_state,
    load_state,
    read_state,
)

__all__ = [
    # identity
    "DEFAULT_ATTRIBUTE_FLAGS",
    "DEFAULT_XFRM",
    "QE_ATTRIBUTE_FLAGS",
    "REPORT_DATA_SIZE",
    "EnclaveIdentity",
    "measure_payload",
    "mrsigner_of",
    # state
    "ATTESTATION_KEY",
    "CPU_SECRET",
    "ENCLAVE_SIGNER_KEY",
    "ENCLAVE_SIGNER_PUBLIC",
    "PCK_CERT",
    "PCK_KEY",
    "PLATFORM",
    "PLATFORM_CA_CERT",
    "PLATFORM_CA_KEY",
    "PLATFORM_CRL_URL",
    "PLATFORM_JSON",
    "QE_IDENTITY_JSON",
    "ROOT_CERT",
    "ROOT_CRL_URL",
    "ROOT_KEY",
    "SIM_CRL_BASE",
    "SIM_FMSPC",
    "SIM_PCE_ID",
    "SIM_PCE_SVN",
    "SIM_QE_SVN",
    "SIM_TCB_COMP_SVNS",
    "TCB_LEVELS_JSON",
    "TCB_SIGNING_CERT",
    "TCB_SIGNING_KEY",
    "SgxState",
    "create_state",
    "describe_state",
    "load_state",
    "read_state",
    # cpu
    "EreportError",
    "SimulatedCpu",
    # qe
    "QE_AUTH_DATA",
    "QuotingEnclave",
    "ReportRejected",
]
