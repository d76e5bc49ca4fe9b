"""Appraise a CCA token: the realm signature with the RAK it carries, the binding of the
realm token to the platform token, and the platform signature with a trusted platform key.

1. The realm token is signed by the realm attestation key (RAK) in its own public key
   claim, with the algorithm of its protected header.
2. The binding: the platform token's challenge is the hash (the realm's RAK hash
   algorithm) of the RAK claim's exact bytes: a raw point in the legacy form, a COSE_Key
   otherwise.
3. The platform token is signed by the CPAK: one of the anchors the user gave (those for
   its implementation id and instance id, when the store names them), or an extra trusted
   root (``roots``: this machine's simulated CPAK with ``--trust-simulated``).

A token whose platform key is this machine's simulated CPAK is ``simulated``; without the
simulated root among ``roots`` it is refused for that, even when that key is also given as
an anchor. A real token without any anchor
raises :class:`attestcall.errors.CollateralMissing` (exit 2): there is nothing to check
it against. Every other failed check is one line in ``problems``; the lifecycle is a claim
the ``[cca]`` policy judges (:mod:`attestcall.arm.validate`).

Signature checks are cached by the token's exact bytes and the key's point (a bounded,
thread-safe LRU): a verifier that sees the same platform token again (every realm of one
machine) checks its signature once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from attestcall.appraisal import Appraisal
from attestcall.arm.fetch.anchors import Anchor, Anchors
from attestcall.arm.formats import cose, token
from attestcall.errors import CollateralMissing
from attestcall.lru import Lru

SIMULATED = ("the platform token is signed by this machine's simulated CCA platform key "
             "(simulated: pass --trust-simulated)")
_CHECKED: Lru[tuple[bytes, bytes], str | None] = Lru(1024)


def clear_caches() -> None:
    _CHECKED.clear()


def _check(data: bytes, message: cose.Sign1, key: ec.EllipticCurvePublicKey,
           key_id: bytes) -> str | None:
    """Why ``key`` (identified by ``key_id``) does not verify ``message``, the COSE_Sign1
    in ``data``; None when it does."""
    return _CHECKED.get_or_create((data, key_id), lambda: message.verify(key))


def appraise_cca(evidence: bytes, anchors: Anchors | None, roots: Sequence[Any] = (),
                 simulated_keys: Sequence[ec.EllipticCurvePublicKey] = ()) -> Appraisal:
    """The appraisal of ``evidence``; ``simulated_keys`` are this machine's simulated
    CPAKs (trusted only when also in ``roots``)."""
    decoded = token.decode(evidence)
    realm, platform = decoded.realm_claims, decoded.platform_claims
    appraisal = Appraisal("cca", claims(decoded), realm.challenge, debug=False)
    problems = appraisal.problems

    assert realm.rak is not None
    failure = _check(decoded.realm_bytes, decoded.realm, realm.rak, b"rak")  # in those bytes
    if failure is not None:
        problems.append(f"the realm token's signature does not verify with its RAK "
                        f"({failure})")
    if platform.challenge != token.binding(realm.public_key, realm.public_key_hash_algo):
        problems.append(f"the platform token is not bound to the realm token: its challenge "
                        f"is not the {realm.public_key_hash_algo} of the realm's public key")

    candidates = [*(anchors.for_platform(platform.implementation_id, platform.instance_id)
                    if anchors is not None else []),
                  *(Anchor(key) for key in _keys(roots))]
    signer = next((a for a in candidates if _check(decoded.platform_bytes, decoded.platform,
                                                   a.key, a.point) is None), None)
    simulated = [k for k in simulated_keys
                 if _check(decoded.platform_bytes, decoded.platform, k,
                           Anchor(k).point) is None]
    if signer is not None:
        appraisal.simulated = any(_same(signer.key, k) for k in simulated)
        if appraisal.simulated and not any(_same(signer.key, k) for k in _keys(roots)):
            problems.append(SIMULATED)  # given as an anchor, but not trusted as simulated
        return appraisal
    if simulated:
        appraisal.simulated = True
        problems.append(SIMULATED)
        return appraisal
    given = [k for k in _keys(roots) if not any(_same(k, s) for s in simulated_keys)]
    if anchors is None and not given:  # only this machine's simulated key, if anything
        raise CollateralMissing(
            "no trust anchor for the CCA platform token: give the platform's key (CPAK), "
            "--cpak FILE (a PEM public key, a JWK or a trust-anchor store)")
    if anchors is not None and not anchors.for_platform(platform.implementation_id,
                                                        platform.instance_id):
        problems.append(f"no trust anchor given is for this platform (implementation id "
                        f"{platform.implementation_id.hex()}, instance id "
                        f"{platform.instance_id.hex()})")
    else:
        problems.append(f"the platform token's signature ({decoded.platform.algorithm.name}) "
                        f"does not verify with any trust anchor given "
                        f"({', '.join(a.describe() for a in candidates)})")
    return appraisal


def _keys(roots: Sequence[Any]) -> list[ec.EllipticCurvePublicKey]:
    keys = []
    for root in roots:
        if isinstance(root, Anchor):
            root = root.key
        elif isinstance(root, Anchors):
            keys += [a.key for a in root.entries]
            continue
        if isinstance(root, ec.EllipticCurvePublicKey):
            keys.append(root)
    return keys


def _same(a: ec.EllipticCurvePublicKey, b: ec.EllipticCurvePublicKey) -> bool:
    return a.curve.name == b.curve.name and a.public_numbers() == b.public_numbers()


def claims(decoded: token.Token) -> dict[str, Any]:
    """The claims for policy and ``--json``: hex strings, integers, text."""
    realm, platform = decoded.realm_claims, decoded.platform_claims
    out: dict[str, Any] = {
        "token_format": decoded.form,
        "platform_profile": platform.profile,
        "realm_profile": realm.profile,
        "challenge": realm.challenge.hex(),
        "personalization_value": realm.personalization_value.hex(),
        "rim": realm.initial_measurement.hex(),
        **{f"rem{i}": rem.hex() for i, rem in enumerate(realm.extensible_measurements)},
        "hash_algo": realm.hash_algo,
        "rak": realm.public_key.hex(),
        "rak_hash_algo": realm.public_key_hash_algo,
        "realm_alg": decoded.realm.algorithm.name,
        "implementation_id": platform.implementation_id.hex(),
        "instance_id": platform.instance_id.hex(),
        "platform_challenge": platform.challenge.hex(),
        "platform_config": platform.config.hex(),
        "lifecycle": platform.lifecycle,
        "lifecycle_state": platform.lifecycle_state,
        "software_components": [
            {"type": c.type, "measurement": c.value.hex(), "version": c.version,
             "signer_id": c.signer_id.hex(), "hash_algo": c.hash_algo}
            for c in platform.software_components],
        "verification_service": platform.verification_service,
        "platform_hash_algo": platform.hash_algo,
        "platform_alg": decoded.platform.algorithm.name,
    }
    if platform.client_id is not None:
        out["client_id"] = platform.client_id
    if realm.instance_id is not None:
        out["realm_instance_id"] = realm.instance_id.hex()
    if realm.mec_policy is not None:
        out["mec_policy"] = realm.mec_policy
    if realm.lfa_policy is not None:
        out["lfa_policy"] = realm.lfa_policy
    if realm.devices_token_hash is not None:
        out["devices_token_hash"] = realm.devices_token_hash.hex()
    return out
