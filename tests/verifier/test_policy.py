"""The policy file: strict parsing, and what it refuses."""

import pytest

from attestcall.appraisal import Appraisal
from attestcall.errors import PolicyError
from attestcall.intel.validate import INTEL_TCB_STATUSES
from attestcall.verifier.policy import Policy

MRENCLAVE = "33" * 32


def sgx(**over):
    claims = {"mrenclave": MRENCLAVE, "mrsigner": "81" * 32, "isv_prod_id": 1, "isv_svn": 3}
    fields = {"technology": "sgx", "claims": claims, "report_data": bytes(64), "debug": False,
              "tcb_status": "UpToDate", "advisories": []}
    fields.update(over)
    return Appraisal(**fields)


def snp(**claims):
    base = {"measurement": "aa" * 48, "vmpl": 0, "host_data": "00" * 32,
            "id_key_digest": "00" * 48, "author_key_digest": "00" * 48,
            "reported_tcb": {"bootloader": 3, "tee": 0, "snp": 8, "microcode": 115},
            "migration_agent": False, "smt_enabled": True}
    base.update(claims)
    return Appraisal(technology="snp", claims=base, report_data=bytes(64), debug=False)


def test_default_policy_accepts_up_to_date_and_sw_hardening_only():
    policy = Policy()
    assert policy.check(sgx()) == []
    assert policy.check(sgx(tcb_status="SWHardeningNeeded")) == []
    for status in ("ConfigurationNeeded", "ConfigurationAndSWHardeningNeeded", "OutOfDate",
                   "OutOfDateConfigurationNeeded", "Revoked"):
        (reason,) = policy.check(sgx(tcb_status=status))
        assert status in reason


def test_revoked_is_refused_whatever_is_accepted():
    policy = Policy.parse({"sgx": {"accept_tcb_status": list(INTEL_TCB_STATUSES[:-1])}})
    (reason,) = policy.check(sgx(tcb_status="Revoked"))
    assert "revoked" in reason


def test_default_policy_refuses_debug_everywhere():
    assert "debug" in Policy().check(sgx(debug=True))[0]
    assert "debug" in Policy().check(
        Appraisal(technology="snp", claims=snp().claims, report_data=bytes(64), debug=True)
    )[0]
    assert Policy.parse({"sgx": {"allow_debug": True}}).check(sgx(debug=True)) == []


def test_allow_lists_and_minimums():
    policy = Policy.parse({"sgx": {"mrenclave": [MRENCLAVE.upper()], "min_isv_svn": 3,
                                   "isv_prod_id": [1, 2]}})
    assert policy.check(sgx()) == []
    other = sgx(claims={**sgx().claims, "mrenclave": "44" * 32, "isv_svn": 2, "isv_prod_id": 9})
    reasons = policy.check(other)
    assert len(reasons) == 3
    assert any("mrenclave" in r for r in reasons)
    assert any("ISV SVN 2" in r for r in reasons)
    assert any("isv_prod_id" in r for r in reasons)


def test_refused_advisories_and_accepted_statuses():
    policy = Policy.parse({"sgx": {"accept_tcb_status": ["ConfigurationAndSWHardeningNeeded"],
                                   "refuse_advisories": ["INTEL-SA-00615"]}})
    appraisal = sgx(tcb_status="ConfigurationAndSWHardeningNeeded",
                    advisories=["INTEL-SA-00289", "INTEL-SA-00615"])
    (reason,) = policy.check(appraisal)
    assert "INTEL-SA-00615" in reason and "INTEL-SA-00289" not in reason


def test_snp_rules():
    assert Policy().check(snp()) == []
    policy = Policy.parse({"snp": {"min_tcb": {"snp": 9, "microcode": 115}, "vmpl": [0],
                                   "allow_smt": False, "allow_migration_agent": False,
                                   "measurement": ["bb" * 48]}})
    reasons = policy.check(snp(vmpl=1, migration_agent=True))
    assert any("snp SPL 8 is below the policy's 9" in r for r in reasons)
    assert any("vmpl" in r for r in reasons)
    assert any("SMT" in r for r in reasons)
    assert any("migration agent" in r for r in reasons)
    assert any("measurement" in r for r in reasons)
    assert not any("microcode" in r for r in reasons)
    fmc = Policy.parse({"snp": {"min_tcb": {"fmc": 1}}}).check(snp())
    assert fmc and "no fmc SPL" in fmc[0]


@pytest.mark.parametrize(
    "data, message",
    [
        ({"sgx": {"allow_debugg": True}}, "unknown key 'allow_debugg'"),
        ({"sevsnp": {}}, "unknown policy table [sevsnp]"),
        ({"sgx": {"allow_debug": "yes"}}, "true or false"),
        ({"sgx": {"mrenclave": ["abcd"]}}, "64 hex digits"),
        ({"sgx": {"mrenclave": "33" * 32}}, "list of hex strings"),
        ({"sgx": {"mrenclave": ["zz" * 32]}}, "64 hex digits"),
        ({"sgx": {"accept_tcb_status": ["Fine"]}}, "unknown TCB status 'Fine'"),
        ({"tdx": {"accept_tcb_status": ["UpToDate", "Revoked"]}}, "never accepted"),
        ({"sgx": {"min_isv_svn": -1}}, "0 to 65535"),
        ({"sgx": {"min_isv_svn": True}}, "0 to 65535"),
        ({"snp": {"min_tcb": {"ucode": 1}}}, "unknown TCB field 'ucode'"),
        ({"snp": {"min_tcb": {"snp": 256}}}, "0 to 255"),
        ({"snp": {"vmpl": [4]}}, "0 to 3"),
        ({"tdx": {"mrtd": ["00" * 32]}}, "96 hex digits"),
        ({"sgx": 5}, "must be a table"),
    ],
)
def test_bad_policies_are_errors(data, message):
    with pytest.raises(PolicyError) as caught:
        Policy.parse(data)
    assert message in str(caught.value)


def test_load_from_toml(tmp_path):
    path = tmp_path / "policy.toml"
    path.write_text(f'[sgx]\nmrenclave = ["{MRENCLAVE}"]\nallow_debug = false\n')
    assert Policy.load(path).get("sgx", "mrenclave") == (MRENCLAVE,)
    path.write_text("[sgx\n")
    with pytest.raises(PolicyError, match="not valid TOML"):
        Policy.load(path)
    with pytest.raises(PolicyError, match="cannot read"):
        Policy.load(tmp_path / "missing.toml")
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(PolicyError):
        Policy.load(path)


def test_none_and_sev_tables():
    assert not Policy().allows_none()
    assert Policy.parse({"none": {"allow": True}}).allows_none()
    policy = Policy.parse({"sev": {"launch_digest": ["ab" * 32], "allow_debug": False}})
    assert policy.get("sev", "launch_digest") == ("ab" * 32,)
    with pytest.raises(PolicyError, match="unknown key 'allowed'"):
        Policy.parse({"none": {"allowed": True}})
    with pytest.raises(PolicyError, match="64 hex digits"):
        Policy.parse({"sev": {"launch_digest": ["ab" * 48]}})
