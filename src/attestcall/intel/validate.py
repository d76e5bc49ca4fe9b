"""Policy tables ``[sgx]`` and ``[tdx]``: their schema and what they refuse.

The debug check is the verifier's (every TEE has one); here: the TCB status and advisories
Intel's collateral gave, the allow-lists of the identity claims, and SGX's minimum ISV SVN.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from attestcall import schema
from attestcall.errors import PolicyError
from attestcall.tees import PolicyTable

DEFAULT_ACCEPTED_TCB = ("UpToDate", "SWHardeningNeeded")
INTEL_TCB_STATUSES = (
    "UpToDate",
    "SWHardeningNeeded",
    "ConfigurationNeeded",
    "ConfigurationAndSWHardeningNeeded",
    "OutOfDate",
    "OutOfDateConfigurationNeeded",
    "Revoked",
)
SGX_ALLOW_LISTS = ("mrenclave", "mrsigner", "isv_prod_id")
TDX_ALLOW_LISTS = ("mrtd", "rtmr0", "rtmr1", "rtmr2", "rtmr3", "mrconfigid", "mrowner",
                   "mrownerconfig")


def _statuses(where: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise PolicyError(f"{where} must be a list of TCB status strings")
    for status in value:
        if status == "Revoked":
            raise PolicyError(f"{where}: a Revoked TCB is never accepted")
        if status not in INTEL_TCB_STATUSES:
            raise PolicyError(f"{where}: unknown TCB status {status!r}; "
                              f"known: {', '.join(INTEL_TCB_STATUSES)}")
    return tuple(value)


_COMMON = {
    "allow_debug": schema.boolean,
    "accept_tcb_status": _statuses,
    "refuse_advisories": schema.strings,
}


def check_tcb(table: Mapping[str, Any], appraisal: Any) -> list[str]:
    """The TCB status must be accepted (never Revoked); no refused advisory."""
    reasons: list[str] = []
    accepted = table.get("accept_tcb_status", DEFAULT_ACCEPTED_TCB)
    if appraisal.tcb_status == "Revoked":
        reasons.append(schema.Reason("the platform's TCB is revoked (TCB status Revoked)",
                                     "accept_tcb_status"))
    elif appraisal.tcb_status is not None and appraisal.tcb_status not in accepted:
        reasons.append(schema.Reason(
            f"TCB status {appraisal.tcb_status} is not accepted by the policy "
            f"(accepted: {', '.join(accepted) or 'none'})", "accept_tcb_status"))
    refused = set(table.get("refuse_advisories", ()))
    hit = [a for a in appraisal.advisories if a in refused]
    if hit:
        reasons.append(schema.Reason(f"advisories refused by the policy: {', '.join(hit)}",
                                     "refuse_advisories"))
    return reasons


def check_sgx(table: Mapping[str, Any], appraisal: Any) -> list[str]:
    claims = appraisal.claims
    reasons = check_tcb(table, appraisal) + schema.allow_lists(table, claims, SGX_ALLOW_LISTS)
    minimum = table.get("min_isv_svn")
    if minimum is not None and claims["isv_svn"] < minimum:
        reasons.append(schema.Reason(
            f"ISV SVN {claims['isv_svn']} is below the policy's {minimum}", "min_isv_svn"))
    return reasons


def check_tdx(table: Mapping[str, Any], appraisal: Any) -> list[str]:
    return check_tcb(table, appraisal) + schema.allow_lists(table, appraisal.claims,
                                                            TDX_ALLOW_LISTS)


SGX_POLICY = PolicyTable(
    {
        **_COMMON,
        "mrenclave": schema.hex_list(32),
        "mrsigner": schema.hex_list(32),
        "isv_prod_id": schema.uint_list(16),
        "min_isv_svn": schema.uint(16),
    },
    check_sgx,
)
TDX_POLICY = PolicyTable(
    {**_COMMON, **{key: schema.hex_list(48) for key in TDX_ALLOW_LISTS}},
    check_tdx,
)
