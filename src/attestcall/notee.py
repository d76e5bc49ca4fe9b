"""The plugin record of technology 0: no TEE. A keep outside any TEE answers with empty
evidence; a tenant refuses it unless its policy's ``[none] allow`` is true."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from attestcall import schema
from attestcall.tees import Backend, KeepServices, OpenedKeep, PolicyTable, Tee


def _open_none(payload: bytes, options: Mapping[str, Any], services: KeepServices) -> OpenedKeep:
    from attestcall.keep.shim import NoneSource

    return OpenedKeep(NoneSource())


TEE = Tee(
    technology=0,
    name="none",
    title="no TEE",
    media_type="application/vnd.attestcall.evidence.none",
    policy=PolicyTable({"allow": schema.boolean}),
    enarx_oid="1.3.6.1.4.1.58270.1.1",  # Enarx's "KVM": no TEE, empty value
    enarx_value=lambda evidence: b"",
    backends=(Backend("none", _open_none, simulated=False),),
)
