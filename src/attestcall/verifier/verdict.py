"""What a verification concludes: the verdict (evidence appraised, then policy)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


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
