"""The TDX plugin record (technology 4): Intel DCAP quote v4 or v5 with TEE type TDX.

Registered in pyproject.toml under the ``attestcall.tees`` entry points; hooks import what
they need when called."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from attestcall.intel import sgx
from attestcall.intel.validate import TDX_POLICY
from attestcall.tees import (
    Backend,
    Option,
    SimState,
    Tee,
    TsmProvider,
    lazy,
)

if TYPE_CHECKING:
    import datetime as dt

MEASUREMENTS = ("rtmr0", "rtmr1", "rtmr2", "rtmr3", "mrconfigid", "mrowner", "mrownerconfig")


def recognise(evidence: bytes) -> bool:
    return sgx.quote_kind(evidence) in ((4, sgx.TEE_TYPE_TDX), (5, sgx.TEE_TYPE_TDX))


def appraise(evidence: bytes, collateral: Any, at: dt.datetime, roots: list[Any]) -> Any:
    from attestcall.intel.roots import intel_root
    from attestcall.intel.verify.appraise import appraise_tdx

    return appraise_tdx(evidence, collateral=collateral, at=at, roots=[intel_root(), *roots])


def simulated_collateral(evidence: bytes) -> str:
    from attestcall.intel.sim import tdx as tdx_sim
    from attestcall.intel.sim.tdx.collateral import collateral_json

    return collateral_json(tdx_sim.load_state())


def report_data(evidence: bytes) -> bytes:
    from attestcall.intel.formats.tdx_quote import DcapQuote

    return DcapQuote.parse(evidence).body.report_data


TEE = Tee(
    technology=4,
    name="tdx",
    title="TDX quote",
    media_type="application/vnd.attestcall.evidence.tdx-dcap-quote",
    recognise=recognise,
    appraise=appraise,
    collateral_source=sgx.collateral_source,
    collateral_options=("--collateral", "--pccs"),
    collateral_service=sgx.PCS_SERVICE,
    simulated_evidence=sgx.simulated_evidence,
    collateral_document=sgx.collateral_document,
    simulated_roots=sgx.simulated_roots,  # the simulated TDX platform shares SGX's root
    simulated_collateral=simulated_collateral,
    policy=TDX_POLICY,
    debug_word="TD",
    report_data=report_data,
    measurement_claim="mrtd",
    default_key_type="p256",
    tsm=TsmProvider("tdx_guest"),
    backends=(Backend("tdx-sim", lazy("attestcall.intel.sim.tdx.keep:open_tdx_sim"),
                      simulated=True),),
    keep_options=(
        Option(("--tdx-quote-version",), "quote_version", "choice",
               "DCAP quote version: 4 (TD 1.0 body, default) or 5 (TD 1.5 body)", (4, 5)),
        *(Option((f"--{name}",), name, "hex:48", f"{name.upper()}, 96 hex digits")
          for name in MEASUREMENTS),
        Option(("--xfam",), "xfam", "u64", "XFAM (a number, 0x… allowed)"),
        Option(("--td-attributes",), "td_attributes", "u64",
               "TD ATTRIBUTES (a number; DEBUG is bit 0: prefer --debug)"),
    ),
    describe=lazy("attestcall.intel.formats.describe:describe_tdx"),
    sim_state=SimState("tdx", lazy("attestcall.intel.sim.tdx.state:create_state"),
                       lazy("attestcall.intel.sim.tdx.state:describe_state")),
)
