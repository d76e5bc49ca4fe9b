"""A CCA token, claim by claim, for people (``attestcall show``): the collection's form,
both COSE_Sign1 tokens (headers, claims, signature) and whether the platform token's
challenge binds the realm's key. Nothing is verified: no signature is checked.

Claims carry the names of draft-ffm-rats-cca-token's CDDL (``cca-platform-...``,
``cca-realm-...``); software components use the PSA token's names (``measurement-type``,
``measurement-value``, ``version``, ``signer-id``, ``hash-algo-id``); the lifecycle is
``{"value", "raw", "name"}``. Claims no specification here names are listed under
``unknown-claims`` by their labels.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import cbor2

from attestcall import describe as common
from attestcall.arm.formats import cose, token
from attestcall.describe import Tree, hexs

FORM_NAMES = {token.TAG_CMW: "CMW collection (RFC 9781 record entries of type 263)",
              token.TAG_LEGACY: "legacy EAT collection (TF-RMM up to v0.8)"}
HEADER_NAMES = {cose.HEADER_ALG: "alg", cose.HEADER_KID: "kid", 3: "content type"}

PLATFORM_NAMES = {
    token.PROFILE: "cca-platform-profile",
    token.CHALLENGE: "cca-platform-challenge",
    token.IMPLEMENTATION_ID: "cca-platform-implementation-id",
    token.INSTANCE_ID: "cca-platform-instance-id",
    token.CONFIG: "cca-platform-config",
    token.LIFECYCLE: "cca-platform-lifecycle",
    token.SOFTWARE_COMPONENTS: "cca-platform-sw-components",
    token.VERIFICATION_SERVICE: "cca-platform-service-indicator",
    token.PLATFORM_HASH_ALGO: "cca-platform-hash-algo-id",
    token.CLIENT_ID: "cca-platform-client-id",
}
REALM_NAMES = {
    token.PROFILE: "cca-realm-profile",
    token.CHALLENGE: "cca-realm-challenge",
    token.INSTANCE_ID: "cca-realm-instance-id",
    token.PERSONALIZATION_VALUE: "cca-realm-personalization-value",
    token.RIM: "cca-realm-initial-measurement",
    token.REMS: "cca-realm-extensible-measurements",
    token.REALM_HASH_ALGO: "cca-realm-hash-algo-id",
    token.RAK: "cca-realm-public-key",
    token.RAK_HASH_ALGO: "cca-realm-public-key-hash-algo-id",
    token.MEC_POLICY: "cca-realm-mec-policy",
    token.LFA_POLICY: "cca-realm-lfa-policy",
    token.DEVICES_TOKEN_HASH: "cca-realm-devices-token-hash",
}


def describe_cca(data: bytes) -> Tree | None:
    """The CCA record's describer: a token (tag 907 or 399), or None for other bytes.
    An :class:`attestcall.errors.EvidenceError` when it starts like one but does not
    decode."""
    if not token.recognise(data):
        return None
    decoded = token.decode(data)
    realm = decoded.realm_claims
    expected = token.binding(realm.public_key, realm.public_key_hash_algo)
    holds = decoded.platform_claims.challenge == expected
    return {
        "kind": "cca-token",
        "technology": "cca",
        "size": len(data),
        "format": {"tag": decoded.form, "name": FORM_NAMES[decoded.form]},
        "platform_token": _sign1(decoded.platform, decoded.platform_bytes,
                                 _platform_claims(decoded)),
        "realm_token": _sign1(decoded.realm, decoded.realm_bytes, _realm_claims(decoded)),
        "binding": {
            "holds": holds,
            "detail": (f"cca-platform-challenge {'is' if holds else 'is not'} the "
                       f"{realm.public_key_hash_algo} of cca-realm-public-key"),
        },
    }


def _sign1(message: cose.Sign1, data: bytes, claims: Tree) -> Tree:
    return {
        "size": len(data),
        "protected_header": _header(message.header),
        "unprotected_header": _header(message.unprotected),
        "claims": claims,
        "signature": hexs(message.signature),
    }


def _header(header: Mapping[Any, Any]) -> Tree:
    out: Tree = {}
    for label, value in header.items():
        if label == cose.HEADER_ALG:
            found = cose.ALGORITHMS.get(value) if type(value) is int else None
            out["alg"] = {"value": _plain(value), "name": found.name if found else "unknown"}
        else:
            out[HEADER_NAMES.get(label, str(label))] = _plain(value)
    return out


def _platform_claims(decoded: token.Token) -> Tree:
    c = decoded.platform_claims
    out: Tree = {
        "cca-platform-profile": c.profile,
        "cca-platform-challenge": hexs(c.challenge),
        "cca-platform-implementation-id": hexs(c.implementation_id),
        "cca-platform-instance-id": hexs(c.instance_id),
        "cca-platform-config": hexs(c.config),
        "cca-platform-lifecycle": {"value": c.lifecycle, "raw": f"{c.lifecycle:#06x}",
                                   "name": c.lifecycle_state},
        "cca-platform-sw-components": [_component(s) for s in c.software_components],
        "cca-platform-hash-algo-id": c.hash_algo,
    }
    if c.verification_service is not None:
        out["cca-platform-service-indicator"] = c.verification_service
    if c.client_id is not None:
        out["cca-platform-client-id"] = c.client_id
    return _with_unknown(out, decoded.platform.payload, PLATFORM_NAMES)


def _component(component: token.SoftwareComponent) -> Tree:
    out: Tree = {}
    if component.type is not None:
        out["measurement-type"] = component.type
    out["measurement-value"] = hexs(component.value)
    if component.version is not None:
        out["version"] = component.version
    out["signer-id"] = hexs(component.signer_id)
    if component.hash_algo is not None:
        out["hash-algo-id"] = component.hash_algo
    return out


def _realm_claims(decoded: token.Token) -> Tree:
    c = decoded.realm_claims
    out: Tree = {"cca-realm-profile": c.profile}  # null in the legacy form
    out["cca-realm-challenge"] = hexs(c.challenge)
    if c.instance_id is not None:
        out["cca-realm-instance-id"] = hexs(c.instance_id)
    out.update({
        "cca-realm-personalization-value": hexs(c.personalization_value),
        "cca-realm-initial-measurement": hexs(c.initial_measurement),
        "cca-realm-extensible-measurements": [hexs(m) for m in c.extensible_measurements],
        "cca-realm-hash-algo-id": c.hash_algo,
        "cca-realm-public-key": {
            "encoding": "raw P-384 point" if c.raw_rak else "COSE_Key",
            "bytes": hexs(c.public_key),
            "key": common.public_key(c.rak),
        },
        "cca-realm-public-key-hash-algo-id": c.public_key_hash_algo,
    })
    if c.mec_policy is not None:
        out["cca-realm-mec-policy"] = c.mec_policy
    if c.lfa_policy is not None:
        out["cca-realm-lfa-policy"] = c.lfa_policy
    if c.devices_token_hash is not None:
        out["cca-realm-devices-token-hash"] = hexs(c.devices_token_hash)
    return _with_unknown(out, decoded.realm.payload, REALM_NAMES)


def _with_unknown(out: Tree, payload: bytes, names: Mapping[int, str]) -> Tree:
    claims = cose.loads(payload, "claims")
    unknown = {str(label): _plain(value) for label, value in claims.items()
               if label not in names}
    if unknown:
        out["unknown-claims"] = unknown
    return out


def _plain(value: Any, depth: int = 0) -> Any:
    """A decoded CBOR value as JSON-able data (byte strings as hex); bounded in depth,
    since shared CBOR values may refer to themselves."""
    if depth > 8:
        return "..."
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, bytes):
        return hexs(value)
    if isinstance(value, list | tuple):
        return [_plain(v, depth + 1) for v in value]
    if isinstance(value, Mapping):
        return {str(_plain(k, depth + 1)): _plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, cbor2.CBORTag):
        return {"tag": value.tag, "value": _plain(value.value, depth + 1)}
    text = str(value)
    return text if len(text) <= 100 else text[:97] + "..."
