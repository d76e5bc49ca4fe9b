"""Fuzz targets for what comes beside the evidence: Intel collateral JSON and policy TOML
(see mutate.py for the long-run command)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

import attestcall
from attestcall.errors import AttestcallError, CollateralError, PolicyError
from attestcall.intel.formats.collateral import Collateral
from attestcall.verifier.policy import Policy
from tests import paths
from tests.fuzz.mutate import FUZZ, mutated

INTEL = paths.DATA / "intel"
TDX = (INTEL / "tdx_quote_v4.bin").read_bytes()
TDX_COLL = (INTEL / "tdx_quote_v4.collateral.json").read_bytes()
POLICY = b'''[tdx]
allow_debug = false
accept_tcb_status = ["UpToDate"]
mrtd = ["''' + b"ab" * 48 + b'''"]

[snp]
min_tcb = { bootloader = 3, tee = 0, snp = 8, microcode = 115 }
vmpl = [0]

[sgx]
min_isv_svn = 2
'''


@FUZZ
@given(mutated(TDX_COLL))
def test_fuzz_intel_collateral(data):
    try:
        collateral = Collateral.load(data)
    except CollateralError:
        return
    try:
        attestcall.verify(TDX, collateral=collateral, at="2025-07-19T10:00:33Z")
    except AttestcallError:
        pass


@FUZZ
@given(st.one_of(mutated(POLICY), st.binary(max_size=200),
                 st.text(alphabet='[]{}="=a.,0x9 \n#', max_size=300).map(str.encode)))
def test_fuzz_policy(data):
    try:
        Policy.from_bytes(data)
    except PolicyError:
        pass
