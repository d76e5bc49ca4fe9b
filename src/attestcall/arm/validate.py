"""The ``[cca]`` policy table: its schema and what it refuses.

Allow-lists of hex strings (an absent or empty list allows anything): ``rim``,
``rem0``..``rem3`` (32, 48 or 64 bytes), ``personalization_value`` (64),
``implementation_id`` (32), ``instance_id`` (33), ``software_components`` (every software
component's measurement must be listed). The platform's lifecycle must be *secured*;
``allow_debug_lifecycle = true`` also accepts the two debug states (non-CCA platform debug,
recoverable CCA platform debug). No other state is ever accepted.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from attestcall import schema
from attestcall.errors import PolicyError
from attestcall.schema import Reason
from attestcall.tees import PolicyTable

ALLOW_LISTS = ("rim", "rem0", "rem1", "rem2", "rem3", "personalization_value",
               "implementation_id", "instance_id")
MEASUREMENT_SIZES = (32, 48, 64)
_HEX = re.compile(r"(?:[0-9a-fA-F]{2})+")


def measurement_list(where: str, value: Any) -> tuple[str, ...]:
    """A list of hex measurements of 32, 48 or 64 bytes, normalised to lower case."""
    if not isinstance(value, list):
        raise PolicyError(f"{where} must be a list of hex strings")
    out = []
    for item in value:
        if not isinstance(item, str) or not _HEX.fullmatch(item) \
                or len(item) // 2 not in MEASUREMENT_SIZES:
            raise PolicyError(f"{where}: {item!r} is not 64, 96 or 128 hex digits")
        out.append(item.lower())
    return tuple(out)


def check_cca(table: Mapping[str, Any], appraisal: Any) -> list[str]:
    from attestcall.arm.formats.token import DEBUG_STATES, SECURED

    claims = appraisal.claims
    reasons = schema.allow_lists(table, claims, ALLOW_LISTS)
    allowed = table.get("software_components")
    if allowed:
        for index, component in enumerate(claims["software_components"]):
            if component["measurement"] not in allowed:
                name = component.get("type") or f"#{index}"
                reasons.append(Reason(
                    f"software component {name} measurement {component['measurement']} is "
                    "not in the policy's allow-list", "software_components"))
    state = claims["lifecycle_state"]
    if state != SECURED:
        debug = state in DEBUG_STATES
        if not (debug and table.get("allow_debug_lifecycle", False)):
            why = ("and the policy does not allow debug lifecycles" if debug
                   else "and no policy accepts that state")
            reasons.append(Reason(
                f"the CCA platform's lifecycle is {state} ({claims['lifecycle']:#06x}), not "
                f"secured, {why}", "allow_debug_lifecycle"))
    return reasons


CCA_POLICY = PolicyTable(
    {
        "rim": measurement_list,
        "rem0": measurement_list,
        "rem1": measurement_list,
        "rem2": measurement_list,
        "rem3": measurement_list,
        "personalization_value": schema.hex_list(64),
        "implementation_id": schema.hex_list(32),
        "instance_id": schema.hex_list(33),
        "software_components": measurement_list,
        "allow_debug_lifecycle": schema.boolean,
    },
    check_cca,
    # the AR4SI claim each key speaks about in an EAR (attestcall.ear)
    ear_claims={
        **{key: "executables" for key in ("rim", "rem0", "rem1", "rem2", "rem3")},
        "personalization_value": "configuration",
        "implementation_id": "hardware",
        "instance_id": "hardware",
        "software_components": "hardware",  # the platform's firmware
        "allow_debug_lifecycle": "runtime-opaque",  # a debug platform can read the realm
    },
)
