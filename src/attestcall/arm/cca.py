"""The Arm CCA plugin record (technology 5): the CCA attestation token, a CBOR collection
of the platform token and the realm token (tag 907, or 399 in the legacy form).

Registered in pyproject.toml under the ``attestcall.tees`` entry points; hooks import what
they need when called."""

from __future__ import annotations

from attestcall.tees import Tee

MEDIA_TYPE = 'application/eat-collection; eat_profile="tag:arm.com,2023:cca_platform#1.0.0"'


def recognise(evidence: bytes) -> bool:
    from attestcall.arm.formats.token import recognise as starts_like_a_token

    return starts_like_a_token(evidence)


def report_data(evidence: bytes) -> bytes:
    """The realm token's challenge: the 64 bytes the nonce went into."""
    from attestcall.arm.formats.token import realm_challenge

    return realm_challenge(evidence)


TEE = Tee(
    technology=5,
    name="cca",
    title="CCA token",
    media_type=MEDIA_TYPE,
    recognise=recognise,
    report_data=report_data,
    default_key_type="p384",  # the RAK's curve
)
