"""Policy tables ``[snp]`` and ``[sev]``: their schema and what they refuse.

``[snp]`` speaks about a verified report (allow-lists, minimum TCB, migration agent, SMT);
``[sev]`` about pre-attestation deployment: the launch digests a tenant provisions a keep
for (checked by the provisioning, not by the verifier).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from attestcall import schema
from attestcall.tees import PolicyTable

SNP_TCB_FIELDS = ("fmc", "bootloader", "tee", "snp", "microcode")
SNP_ALLOW_LISTS = ("measurement", "vmpl", "host_data", "id_key_digest", "author_key_digest")


def check_snp(table: Mapping[str, Any], appraisal: Any) -> list[str]:
    claims = appraisal.claims
    reasons = schema.allow_lists(table, claims, SNP_ALLOW_LISTS)
    for name, minimum in table.get("min_tcb", {}).items():
        have = claims["reported_tcb"].get(name)
        if have is None:
            reasons.append(schema.Reason(
                f"the reported TCB has no {name} SPL but the policy sets one", "min_tcb"))
        elif have < minimum:
            reasons.append(schema.Reason(
                f"reported TCB {name} SPL {have} is below the policy's {minimum}", "min_tcb"))
    if claims.get("migration_agent") and not table.get("allow_migration_agent", True):
        reasons.append(schema.Reason(
            "a migration agent is bound to the guest and the policy refuses it",
            "allow_migration_agent"))
    if claims.get("smt_enabled") and not table.get("allow_smt", True):
        reasons.append(schema.Reason("SMT is enabled on the host and the policy refuses it",
                                     "allow_smt"))
    return reasons


SNP_POLICY = PolicyTable(
    {
        "allow_debug": schema.boolean,
        "measurement": schema.hex_list(48),
        "min_tcb": schema.uint_table(SNP_TCB_FIELDS, 8, "{ snp = 8, microcode = 115 }"),
        "vmpl": schema.uint_list(2),
        "host_data": schema.hex_list(32),
        "id_key_digest": schema.hex_list(48),
        "author_key_digest": schema.hex_list(48),
        "allow_migration_agent": schema.boolean,
        "allow_smt": schema.boolean,
    },
    check_snp,
)
SEV_POLICY = PolicyTable({"launch_digest": schema.hex_list(32), "allow_debug": schema.boolean})
