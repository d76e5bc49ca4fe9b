"""The Arm CCA plugin record (technology 5): the CCA attestation token, a CBOR collection
of the platform token and the realm token (tag 907, or 399 in the legacy form).

Registered in pyproject.toml under the ``attestcall.tees`` entry points; hooks import what
they need when called."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from attestcall.arm.validate import CCA_POLICY
from attestcall.tees import Backend, Option, SimState, Tee, TsmProvider, lazy

if TYPE_CHECKING:
    import datetime as dt

# The media type CCA verifiers in the field take the token under (Veraison's CCA schemes,
# its linux-tsm evidence builder, trustee's clients): a keep certificate's CMW record says
# it, so such a verifier can be handed the record's value as is.
MEDIA_TYPE = 'application/eat-collection; profile="http://arm.com/CCA-SSD/1.0.0"'
SIM_FOLDER = "cca"  # the simulator's folder in the simulated-platform home
SIM_CPAK = "cpak.pub.pem"  # ... and its public platform key there


def recognise(evidence: bytes) -> bool:
    from attestcall.arm.formats.token import recognise as starts_like_a_token

    return starts_like_a_token(evidence)


def report_data(evidence: bytes) -> bytes:
    """The realm token's challenge: the 64 bytes the nonce went into."""
    from attestcall.arm.formats.token import realm_challenge

    return realm_challenge(evidence)


def collateral_source(evidence: bytes, value: Any, url: str | None) -> Any:
    """The platform's trust anchor the user gave: a PEM or DER public key, a JWK or a
    trust-anchor store (a path, its content, or loaded) (:mod:`attestcall.arm.fetch.anchors`)."""
    from attestcall.arm.fetch.anchors import load
    from attestcall.errors import CollateralError

    if url is not None:
        raise CollateralError("CCA tokens have no collateral service: give the platform's "
                              "trust anchor (its CPAK) as a file")
    return load(value)


def appraise(evidence: bytes, collateral: Any, at: dt.datetime, roots: list[Any]) -> Any:
    from attestcall.arm.verify.appraise import appraise_cca

    return appraise_cca(evidence, collateral, roots, simulated_roots())


def simulated_roots() -> list[Any]:
    """This machine's simulated CPAK, if the CCA simulator made one (never created here;
    read again only when it changed)."""
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    from attestcall.simstate import read_published

    return read_published(SIM_FOLDER, SIM_CPAK, load_pem_public_key)


TEE = Tee(
    technology=5,
    name="cca",
    title="CCA token",
    media_type=MEDIA_TYPE,
    recognise=recognise,
    appraise=appraise,
    collateral_source=collateral_source,
    collateral_options=("--cpak", None),  # the trust anchor's file; no service
    collateral_help="CCA: the platform's trust anchor (CPAK): a PEM or DER public key, a "
    "JWK, or a trust-anchor store (JSON list of keys with implementation and instance ids)",
    simulated_roots=simulated_roots,
    policy=CCA_POLICY,
    debug_word="platform",
    report_data=report_data,
    measurement_claim="rim",  # the realm initial measurement
    default_key_type="p384",  # the RAK's curve
    describe=lazy("attestcall.arm.formats.describe:describe_cca"),
    # a realm's token through configfs-tsm (Linux 6.13's arm-cca-guest): inblob the 64-byte
    # challenge, outblob the token; no auxblob; privlevel shown but ignored, so not taken
    tsm=TsmProvider("arm_cca_guest"),
    simulated_collateral=lazy("attestcall.arm.sim.state:trust_anchors_json"),
    backends=(Backend("cca-sim", lazy("attestcall.arm.sim.keep:open_cca_sim"),
                      simulated=True),),
    keep_options=(
        Option(("--cca-token-format",), "token_format", "choice",
               "the token's form: 907 (the CMW collection, default) or 399 (TF-RMM up to "
               "v0.8)", (907, 399)),
        Option(("--cca-hash-algo",), "hash_algo", "choice",
               "the realm's hash algorithm, of its RIM and REMs (default sha-256)",
               ("sha-256", "sha-512")),
        *(Option((f"--cca-rem{i}",), f"rem{i}", "hex:32|64",
                 f"REM{i}: 64 hex digits in a sha-256 realm, 128 in a sha-512 one (default "
                 "zero)") for i in range(4)),
        Option(("--cca-personalization-value",), "personalization_value", "hex:64",
               "the realm's personalization value, 128 hex digits (default zero)"),
    ),
    sim_state=SimState("cca", lazy("attestcall.arm.sim.state:create_state"),
                       lazy("attestcall.arm.sim.state:describe_state")),
)
