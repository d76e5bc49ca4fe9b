"""What a verification concludes: the technology verifiers' appraisal and the final verdict."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from attestcall.errors import AttestcallError


class EvidenceError(AttestcallError):
    """The evidence is unusable: truncated, malformed, of an unknown format (exit status 2)."""


class CollateralError(AttestcallError):
    """Collateral or certificates given are unusable: not JSON, missing fields, not a
    certificate (exit status 2). Collateral that parses but fails a check is a rejection."""


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


@dataclass
class Verdict:
    """The decision: ``accepted`` is true only when ``reasons`` is empty."""

    accepted: bool
    technology: str
    tcb_status: str | None
    advisories: list[str]
    claims: dict[str, Any]
    reasons: list[str]
    simulated: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "technology": self.technology,
            "tcb_status": self.tcb_status,
            "advisories": list(self.advisories),
            "claims": self.claims,
            "reasons": list(self.reasons),
            "simulated": self.simulated,
        }
