"""The SGX plugin record (technology 2): Intel DCAP quote v3 (or v4/v5 with TEE type SGX).

Registered in pyproject.toml under the ``attestcall.tees`` entry points. Every hook imports
what it needs when called, so loading this record costs nothing but this module."""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any

from attestcall.intel.validate import SGX_POLICY
from attestcall.tees import Backend, Option, SimState, Tee, lazy

if TYPE_CHECKING:
    import datetime as dt

INTEL_QE_VENDOR_ID = bytes.fromhex("939a7233f79c4ca9940a0db3957f0607")
HEADER_SIZE = 48
TEE_TYPE_SGX = 0
TEE_TYPE_TDX = 0x81


def quote_kind(evidence: bytes) -> tuple[int, int] | None:
    """(version, TEE type) of an Intel DCAP ECDSA quote header, or None."""
    if len(evidence) < HEADER_SIZE or evidence[12:28] != INTEL_QE_VENDOR_ID:
        return None
    version, key_type, tee_type = struct.unpack_from("<HHI", evidence)
    if key_type != 2:
        return None
    return version, tee_type


def recognise(evidence: bytes) -> bool:
    kind = quote_kind(evidence)
    return kind in ((3, TEE_TYPE_SGX), (4, TEE_TYPE_SGX), (5, TEE_TYPE_SGX))


def collateral_source(evidence: bytes, value: Any, url: str | None) -> Any:
    """Where appraisal gets Intel collateral: the user's file or loaded bundle, or a PCS/PCCS
    at ``url`` (:func:`attestcall.intel.fetch.source.collateral_source`)."""
    if value is None and url is None:
        from attestcall.errors import CollateralError

        kind = quote_kind(evidence)
        name = "TDX" if kind is not None and kind[1] == TEE_TYPE_TDX else "SGX"
        raise CollateralError(f"{name} evidence needs Intel collateral: pass --collateral "
                              "FILE or --pccs URL")
    from attestcall.intel.fetch.source import collateral_source as make_source

    return make_source(value, url)


def appraise(evidence: bytes, collateral: Any, at: dt.datetime, roots: list[Any]) -> Any:
    from attestcall.intel.roots import intel_root
    from attestcall.intel.verify.appraise import appraise_sgx

    return appraise_sgx(evidence, collateral=collateral, at=at, roots=[intel_root(), *roots])


def simulated_roots() -> list[Any]:
    """The simulated Intel SGX Root CA of this machine, if it exists (never created)."""
    from attestcall.simstate import read_certificates

    return read_certificates("sgx", "root_ca.pem")


PCS_SERVICE = ("ATTESTCALL_PCCS_URL", "https://api.trustedservices.intel.com",
               "Intel collateral (PCK CRL, TCB info, QE identity)")


def simulated_evidence(evidence: bytes) -> bool:
    """The quote's PCK chain ends at a simulated root (by its name)."""
    from attestcall.intel.fetch.pcs import quote_chain

    chain = quote_chain(evidence)
    return bool(chain) and "SIMULATED" in chain[-1].subject.rfc4514_string().upper()


def collateral_document(evidence: bytes, url: str | None) -> bytes:
    """The quote's collateral as ``--collateral`` reads it (QuoteCollateralV3 JSON): the
    simulators' for a simulated quote, else fetched from the PCS/PCCS at ``url``."""
    import json

    from attestcall.errors import CollateralError

    if simulated_evidence(evidence):
        kind = quote_kind(evidence)
        tee = "tdx" if kind is not None and kind[1] == TEE_TYPE_TDX else "sgx"
        if tee == "tdx":
            from attestcall.intel.tdx import simulated_collateral as tdx_collateral

            return tdx_collateral(evidence).encode()
        return simulated_collateral(evidence).encode()
    if url is None:
        raise CollateralError("nothing may be fetched (--offline), and the quote's collateral "
                              "comes from a PCS/PCCS")
    from attestcall.intel.fetch.pcs import fetch_collateral

    return (json.dumps(fetch_collateral(url, evidence), indent=2) + "\n").encode()


def simulated_collateral(evidence: bytes) -> str:
    from attestcall.intel.sim import sgx as sgx_sim
    from attestcall.intel.sim.sgx.collateral import collateral_json

    return collateral_json(sgx_sim.load_state())


def report_data(evidence: bytes) -> bytes:
    from attestcall.intel.formats.quote import Quote
    from attestcall.intel.formats.tdx_quote import DcapQuote

    if evidence[:2] == b"\x03\x00":
        return Quote.parse(evidence).body.report_data
    return DcapQuote.parse(evidence).body.report_data


TEE = Tee(
    technology=2,
    name="sgx",
    title="SGX quote",
    media_type="application/vnd.attestcall.evidence.sgx-dcap-quote",
    recognise=recognise,
    appraise=appraise,
    collateral_source=collateral_source,
    collateral_options=("--collateral", "--pccs"),
    collateral_service=PCS_SERVICE,
    simulated_evidence=simulated_evidence,
    collateral_document=collateral_document,
    simulated_roots=simulated_roots,
    simulated_collateral=simulated_collateral,
    policy=SGX_POLICY,
    debug_word="enclave",
    report_data=report_data,
    measurement_claim="mrenclave",
    default_key_type="p256",  # the PCK's curve
    enarx_oid="1.3.6.1.4.1.58270.1.2",
    enarx_value=lambda evidence: evidence,
    backends=(
        Backend("sgx-sim", lazy("attestcall.intel.sim.sgx.keep:open_sgx_sim"), simulated=True),
        Backend("gramine", lazy("attestcall.intel.client.gramine:open_gramine"),
                simulated=False, probe=lazy("attestcall.intel.client.gramine:probe"), order=30),
    ),
    keep_options=(
        Option(("--mrenclave",), "identity.mrenclave", "hex:32",
               "MRENCLAVE, 64 hex digits (default: a hash of the payload's bytes)"),
        Option(("--mrsigner",), "identity.mrsigner", "hex:32",
               "MRSIGNER, 64 hex digits (default: the simulated signer key's)"),
        Option(("--isv-prodid",), "identity.isv_prod_id", "u16", "ISVPRODID (0..65535)"),
        Option(("--isv-svn",), "identity.isv_svn", "u16", "ISVSVN (0..65535)"),
    ),
    describe=lazy("attestcall.intel.formats.describe:describe_sgx"),
    sim_state=SimState("sgx", lazy("attestcall.intel.sim.sgx.state:create_state"),
                       lazy("attestcall.intel.sim.sgx.state:describe_state")),
)
