"""What a TEE's verifier concludes about evidence, before policy: the Appraisal."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Appraisal:
    """What a technology verifier found, before policy.

    ``problems`` holds every reason the evidence cannot be trusted (bad signature, broken
    chain, revoked, expired collateral, no matching TCB level, simulated root without
    trust_simulated, ...), each one line for a person. ``claims`` maps names to hex strings
    (bytes), ints or nested dicts, as documented per technology."""

    technology: str  # "sgx", "tdx" or "snp"
    claims: dict[str, Any]
    report_data: bytes
    debug: bool
    tcb_status: str | None = None
    advisories: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    simulated: bool = False
