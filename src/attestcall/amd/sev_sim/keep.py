"""The simulated SEV keep (``--tee sev-sim``), as the registry opens it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from attestcall.tees import KeepServices, OpenedKeep


def open_sev_sim(payload: bytes, options: Mapping[str, Any],
                 services: KeepServices) -> OpenedKeep:
    from attestcall.keep import sev

    keep = sev.open_sev_sim(payload, options)
    return OpenedKeep(keep.source, keep.details)
