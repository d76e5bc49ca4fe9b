"""The plugin record of technology 0: no TEE. A keep outside any TEE answers with empty
evidence; a tenant refuses it unless its policy's ``[none] allow`` is true."""

from __future__ import annotations

from attestcall import schema
from attestcall.tees import Backend, PolicyTable, Tee, lazy

TEE = Tee(
    technology=0,
    name="none",
    title="no TEE",
    media_type="application/vnd.attestcall.evidence.none",
    policy=PolicyTable({"allow": schema.boolean}),
    measurement_claim="",  # no TEE, no measurement: the service certifies an empty one
    enarx_oid="1.3.6.1.4.1.58270.1.1",  # Enarx's "KVM": no TEE, empty value
    enarx_value=lambda evidence: b"",
    backends=(Backend("none", lazy("attestcall.keep.platforms:open_none"), simulated=False),),
)
