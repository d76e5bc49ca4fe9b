"""The simulated TDX platform's collateral, in the shapes Intel's PCS serves for TDX.

:func:`collateral` gives the nine ``QuoteCollateralV3`` fields; :func:`collateral_json`
the JSON document ``attestcall verify --collateral`` and dcap-qvl read (what
``attestcall sim collateral --tee tdx-sim`` writes).

- TCB info v3 (``"id": "TDX"``): tdxModule, tdxModuleIdentities and tcbLevels (the PCK's
  sgxtcbcomponents and PCESVN, the module's tdxtcbcomponents), ``issueDate`` and
  ``nextUpdate`` = issueDate + 30 days, compact JSON in Intel's key order, signed (ECDSA
  P-256 / SHA-256, raw r||s) by the simulated TCB signing key.
- QE identity v2 (``"id": "TD_QE"``): the TD QE's MRSIGNER, ISVPRODID 2, MISCSELECT and
  ATTRIBUTES with Intel's masks, TCB levels by ISVSVN; same dates, same signer.
- CRLs and issuer chains: the SGX simulator's (the PCK hierarchy is shared), built by
  :mod:`attestcall.intel.sim.sgx.collateral`.
"""

from __future__ import annotations

import datetime as dt
import json

from attestcall.intel.sim.sgx import collateral as sgx_collateral
from attestcall.intel.sim.sgx.collateral import sign_text
from attestcall.intel.sim.tdx.state import TdxState

FIELDS = sgx_collateral.FIELDS


def tcb_info_text(state: TdxState, issued: dt.datetime) -> str:
    """The signed TDX TCB info v3 text."""
    return sgx_collateral._compact(sgx_collateral._dated(json.loads(state.tcb_info_json), issued))


def qe_identity_text(state: TdxState, issued: dt.datetime) -> str:
    """The signed TD QE identity v2 text."""
    document = json.loads(state.qe_identity_json)
    return sgx_collateral._compact(sgx_collateral._dated(document, issued))


def collateral(
    state: TdxState, *, issued: dt.datetime | None = None, revoked_pck: bool = False
) -> dict[str, str]:
    """The simulated TDX platform's collateral, in the QuoteCollateralV3 field names.
    ``issued`` (timezone-aware, default now) dates it; ``revoked_pck`` lists the PCK
    certificate in the PCK CRL."""
    issued = sgx_collateral._instant(issued)
    fields = sgx_collateral.collateral(state.sgx, issued=issued, revoked_pck=revoked_pck)
    key = state.sgx.tcb_signing_key
    tcb_info = tcb_info_text(state, issued)
    qe_identity = qe_identity_text(state, issued)
    fields.update(
        tcb_info=tcb_info,
        tcb_info_signature=sign_text(key, tcb_info),
        qe_identity=qe_identity,
        qe_identity_signature=sign_text(key, qe_identity),
    )
    return {name: fields[name] for name in FIELDS}


def collateral_json(
    state: TdxState, *, issued: dt.datetime | None = None, revoked_pck: bool = False
) -> str:
    """:func:`collateral` as a JSON document."""
    return json.dumps(collateral(state, issued=issued, revoked_pck=revoked_pck), indent=2) + "\n"
