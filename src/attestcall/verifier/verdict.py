"""What a verification concludes: the verdict (evidence appraised, then policy)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Verdict:
    """The decision: ``accepted`` is true only when ``reasons`` is empty.

    ``problems`` are the reasons the evidence is not proven genuine (the appraisal's:
    signatures, chains, revocation, collateral, an untrusted simulated root); they are also
    in ``reasons``. ``debug``: the evidence is from a debug instance. A reason that is an
    :class:`attestcall.schema.Reason` names the policy key that refused (``"nonce"`` for a
    nonce the report data does not equal)."""

    accepted: bool
    technology: str
    tcb_status: str | None
    advisories: list[str]
    claims: dict[str, Any]
    reasons: list[str]
    simulated: bool = False
    debug: bool = False
    problems: list[str] = field(default_factory=list)

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
