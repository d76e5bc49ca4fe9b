"""The simulated TDX platform's state: the TDX-only part, under ``sim_home()/tdx``.

A TDX platform certifies its quotes with the same PCK hierarchy as SGX, so the simulated
Intel SGX Root CA, PCK Platform CA, PCK certificate, TCB signing key and CPU secret are the
SGX simulator's (:func:`attestcall.intel.sim.sgx.load_state`). What only TDX has lives here:

- ``td_qe_attestation.key.pem``: the TD quoting enclave's ECDSA P-256 attestation key (0600);
- ``platform.json``: the TDX module (TEE_TCB_SVN, TEE_TCB_SVN2, MRSEAM, MRSIGNERSEAM, SEAM
  attributes), the TD QE's identity (ISVPRODID 2) and QE ID, and the SHA-256 of the PCK
  certificate this state was made for;
- ``tcb_info.json``: the TDX TCB info v3 (``"id": "TDX"``, unsigned, undated): tdxModule,
  tdxModuleIdentities and tcbLevels with sgxtcbcomponents (the PCK's) and tdxtcbcomponents;
- ``td_qe_identity.json``: the TD QE identity v2 (``"id": "TD_QE"``, unsigned, undated).

Created atomically (see :mod:`attestcall.simstate`). A state made for another SGX platform
(the SGX state was recreated alone) is refused with a hint to reset.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from attestcall import simstate
from attestcall.errors import AttestcallError
from attestcall.intel.sim import sgx as sgx_sim
from attestcall.intel.sim.sgx import DEFAULT_XFRM, QE_ATTRIBUTE_FLAGS, EnclaveIdentity, SgxState
from attestcall.intel.sim.sgx.state import qe_identity_json
from attestcall.intel.sim.tdx.report import TeeTcbInfo

PLATFORM = "tdx"

ATTESTATION_KEY = "td_qe_attestation.key.pem"
PLATFORM_JSON = "platform.json"
TCB_INFO_JSON = "tcb_info.json"
QE_IDENTITY_JSON = "td_qe_identity.json"
_FILES = (ATTESTATION_KEY, PLATFORM_JSON, TCB_INFO_JSON, QE_IDENTITY_JSON)

# The simulated TDX module: SVN 5 of major version 1, SEAM loader SVN 2.
SIM_TEE_TCB_SVN = bytes((5, 1, 2)) + bytes(13)
SIM_OLDER_TEE_TCB_SVN = bytes((3, 1, 1)) + bytes(13)
SIM_MR_SIGNER_SEAM = bytes(48)  # Intel signs its TDX module: MRSIGNERSEAM is zero
SIM_SEAM_ATTRIBUTES = bytes(8)
SIM_TD_QE_PROD_ID = 2
SIM_TD_QE_SVN = 4


@dataclass(frozen=True, eq=False)
class TdxState:
    """The loaded simulated TDX platform (with the SGX platform it shares the PCK with)."""

    folder: Path
    sgx: SgxState
    attestation_key: ec.EllipticCurvePrivateKey
    qe_identity: EnclaveIdentity
    qe_id: bytes
    tee_tcb_info: TeeTcbInfo
    tcb_info_json: bytes
    qe_identity_json: bytes

    @functools.cached_property
    def tee_tcb_info_bytes(self) -> bytes:
        return self.tee_tcb_info.pack()


def load_state(home: Path | str | None = None) -> TdxState:
    """The TDX state under ``home`` (default ``sim_home()``), created on first use together
    with the SGX state it builds on; loaded once per process while neither changes."""
    sgx = sgx_sim.load_state(home)
    return simstate.load_state(PLATFORM, create_state, lambda folder: read_state(folder, sgx),
                               home, depends=sgx)


def _pck_digest(sgx: SgxState) -> str:
    return hashlib.sha256(sgx.pck_cert.public_bytes(Encoding.DER)).hexdigest()


def read_state(folder: Path, sgx: SgxState) -> TdxState:
    """Load and check the TDX state in ``folder`` against the SGX state ``sgx`` (no cache)."""
    files = simstate.check_manifest(folder, PLATFORM, _FILES)
    try:
        key = simstate.load_private_key(folder, ATTESTATION_KEY, files[ATTESTATION_KEY])
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            raise simstate.corrupt(folder, "the TD QE attestation key is not ECDSA P-256")
        info = json.loads(files[PLATFORM_JSON])
        if info["pck_sha256"] != _pck_digest(sgx):
            raise simstate.corrupt(folder, "it was made for another simulated SGX platform")
        module, qe = info["module"], info["td_qe"]
        tee_tcb_info = TeeTcbInfo(
            tee_tcb_svn=bytes.fromhex(module["tee_tcb_svn"]),
            mr_seam=bytes.fromhex(module["mrseam"]),
            mr_signer_seam=bytes.fromhex(module["mrsignerseam"]),
            attributes=bytes.fromhex(module["seam_attributes"]),
            tee_tcb_svn2=bytes.fromhex(module["tee_tcb_svn2"]),
        )
        qe_identity = EnclaveIdentity.from_record(qe)
        qe_id = bytes.fromhex(info["qe_id"])
        if len(qe_id) != 16:
            raise simstate.corrupt(folder, "the QE ID is not 16 bytes")
        json.loads(files[TCB_INFO_JSON])
        json.loads(files[QE_IDENTITY_JSON])
    except simstate.SimStateError:
        raise
    except (KeyError, TypeError, ValueError, AttestcallError) as exc:
        raise simstate.corrupt(folder, f"{type(exc).__name__}: {exc}") from exc
    return TdxState(folder, sgx, key, qe_identity, qe_id, tee_tcb_info,  # type: ignore[arg-type]
                    files[TCB_INFO_JSON], files[QE_IDENTITY_JSON])  # fmt: skip


# ------------------------------------------------------------------------ state creation


def _svns(values: bytes | tuple[int, ...]) -> list[dict[str, int]]:
    return [{"svn": svn} for svn in values]


def _tcb_info(sgx: SgxState, module: TeeTcbInfo, created: dt.datetime) -> dict[str, Any]:
    """TDX TCB info v3 for the simulated platform (dates and signature come with the
    collateral): the latest level is this platform's, an older one is OutOfDate."""
    date = created.strftime("%Y-%m-%dT00:00:00Z")
    pck = sgx.pck_extension.tcb
    current = list(pck.comp_svns)
    older = [max(0, svn - 1) if i < 2 else svn for i, svn in enumerate(current)]
    mrsigner = module.mr_signer_seam.hex().upper()
    attributes = module.attributes.hex().upper()

    def level(sgx_svns: list[int], pce_svn: int, tdx_svns: bytes, status: str,
              advisories: list[str]) -> dict[str, Any]:  # fmt: skip
        body: dict[str, Any] = {
            "tcb": {"sgxtcbcomponents": _svns(sgx_svns), "pcesvn": pce_svn,
                    "tdxtcbcomponents": _svns(tdx_svns)},
            "tcbDate": date,
            "tcbStatus": status,
        }  # fmt: skip
        if advisories:
            body["advisoryIDs"] = advisories
        return body

    major = module.tee_tcb_svn[1]
    return {
        "id": "TDX",
        "version": 3,
        "fmspc": sgx.fmspc.hex().upper(),
        "pceId": sgx.pce_id.hex().upper(),
        "tcbType": 0,
        "tcbEvaluationDataNumber": 1,
        "tdxModule": {"mrsigner": mrsigner, "attributes": attributes,
                      "attributesMask": "FFFFFFFFFFFFFFFF"},
        "tdxModuleIdentities": [{
            "id": f"TDX_{major:02X}",
            "mrsigner": mrsigner,
            "attributes": attributes,
            "attributesMask": "FFFFFFFFFFFFFFFF",
            "tcbLevels": [
                {"tcb": {"isvsvn": module.tee_tcb_svn[0]}, "tcbDate": date,
                 "tcbStatus": "UpToDate"},
                {"tcb": {"isvsvn": SIM_OLDER_TEE_TCB_SVN[0]}, "tcbDate": date,
                 "tcbStatus": "OutOfDate", "advisoryIDs": ["SIMULATED-SA-00002"]},
            ],
        }],
        "tcbLevels": [
            level(current, pck.pce_svn, module.tee_tcb_svn, "UpToDate", []),
            level(older, pck.pce_svn - 1, SIM_OLDER_TEE_TCB_SVN, "OutOfDate",
                  ["SIMULATED-SA-00001"]),
        ],
    }  # fmt: skip


def create_state(folder: Path) -> None:
    """Generate a fresh simulated TDX platform into the (private, empty) ``folder``; the
    SGX state next to it is loaded (created if need be) for its PCK certificate."""
    sgx = sgx_sim.load_state(folder.parent)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    module = TeeTcbInfo(
        tee_tcb_svn=SIM_TEE_TCB_SVN,
        mr_seam=os.urandom(48),
        mr_signer_seam=SIM_MR_SIGNER_SEAM,
        attributes=SIM_SEAM_ATTRIBUTES,
        tee_tcb_svn2=SIM_TEE_TCB_SVN,
    )
    qe = EnclaveIdentity(
        mrenclave=os.urandom(32),
        mrsigner=os.urandom(32),
        isv_prod_id=SIM_TD_QE_PROD_ID,
        isv_svn=SIM_TD_QE_SVN,
        attribute_flags=QE_ATTRIBUTE_FLAGS,
        xfrm=DEFAULT_XFRM,
    )
    info = {
        "comment": "SIMULATED Intel TDX platform (attestcall); not a real machine",
        "pck_sha256": _pck_digest(sgx),
        "qe_id": os.urandom(16).hex(),
        "module": {
            "tee_tcb_svn": module.tee_tcb_svn.hex(),
            "tee_tcb_svn2": module.tee_tcb_svn2.hex(),
            "mrseam": module.mr_seam.hex(),
            "mrsignerseam": module.mr_signer_seam.hex(),
            "seam_attributes": module.attributes.hex(),
        },
        "td_qe": qe.to_record(),
    }

    def dump(value: Any) -> bytes:
        return json.dumps(value, indent=2).encode() + b"\n"

    simstate.write_private_key(folder / ATTESTATION_KEY, ec.generate_private_key(ec.SECP256R1()))
    simstate.write_public(folder / PLATFORM_JSON, dump(info))
    simstate.write_public(folder / TCB_INFO_JSON, dump(_tcb_info(sgx, module, now)))
    simstate.write_public(folder / QE_IDENTITY_JSON, dump(qe_identity_json(qe, now, "TD_QE")))
    simstate.write_manifest(folder, PLATFORM, _FILES)


def describe_state(folder: Path) -> str:
    """Human-readable account of the TDX state in ``folder``."""
    state = read_state(folder, sgx_sim.load_state(folder.parent))
    module, qe = state.tee_tcb_info, state.qe_identity
    return "\n".join([
        f"Intel TDX (simulated): {folder}",
        "  PCK hierarchy, TCB signing key and CPU secret: the simulated SGX platform's",
        f"  TDX module: TEE_TCB_SVN {module.tee_tcb_svn.hex()} (SVN {module.tee_tcb_svn[0]}, "
        f"major version {module.tee_tcb_svn[1]})",
        f"              MRSEAM {module.mr_seam.hex()}",
        f"              MRSIGNERSEAM {module.mr_signer_seam.hex()}",
        f"  TD QE: MRENCLAVE {qe.mrenclave.hex()}",
        f"         MRSIGNER {qe.mrsigner.hex()}  ISVPRODID {qe.isv_prod_id}  "
        f"ISVSVN {qe.isv_svn}; attestation key ECDSA P-256",
    ])  # fmt: skip
