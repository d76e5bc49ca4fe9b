"""The simulated CCA platform's state (attestcall.arm.sim.state): keys, ids, the published
CPAK and the trust-anchor store."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from attestcall.arm.sim import state
from attestcall.errors import SimStateError
from attestcall.simstate import sim_home


def test_created_with_private_keys_and_the_cpak_published():
    loaded = state.load_state()
    folder = sim_home() / "cca"
    assert loaded.folder.resolve() == folder.resolve()
    for name in (state.CPAK_KEY, state.RAK_KEY):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600
    assert loaded.cpak.curve.name == loaded.rak.curve.name == "secp384r1"
    assert loaded.cpak.private_numbers() != loaded.rak.private_numbers()
    published = serialization.load_pem_public_key((folder / "cpak.pub.pem").read_bytes())
    assert published == loaded.cpak.public_key()
    assert "SIMULATED" in (folder / "platform.json").read_text()
    assert loaded.lifecycle == 0x3000 and len(loaded.implementation_id) == 32
    assert len(loaded.components) >= 4 and {c.type for c in loaded.components} >= {"RMM"}


def test_instance_id_is_01_and_the_hash_of_the_cpak_point():
    loaded = state.load_state()
    point = loaded.cpak.public_key().public_bytes(serialization.Encoding.X962,
                                                  serialization.PublicFormat.UncompressedPoint)
    assert len(point) == 97 and point[0] == 4
    assert loaded.instance_id == b"\x01" + hashlib.sha256(point).digest()


def test_trust_anchor_store_is_rust_ccatokens_format():
    loaded = state.load_state()
    store = json.loads(state.trust_anchors_json())
    assert isinstance(store, list) and len(store) == 1
    (anchor,) = store
    assert set(anchor) == {"pkey", "implementation-id", "instance-id"}
    assert anchor["implementation-id"] == loaded.implementation_id.hex()
    assert anchor["instance-id"] == loaded.instance_id.hex()
    jwk = anchor["pkey"]
    assert (jwk["kty"], jwk["crv"]) == ("EC", "P-384")

    def coordinate(text: str) -> int:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        assert len(raw) == 48
        return int.from_bytes(raw, "big")

    key = ec.EllipticCurvePublicNumbers(coordinate(jwk["x"]), coordinate(jwk["y"]),
                                        ec.SECP384R1()).public_key()
    assert key == loaded.cpak.public_key()


def test_describe_names_the_keys_and_ids():
    loaded = state.load_state()
    text = state.describe_state(loaded.folder)
    assert "Arm CCA (simulated)" in text and loaded.instance_id.hex() in text
    assert "cpak.pub.pem" in text and "RAK ECDSA P-384" in text


def test_a_tampered_instance_id_is_refused(tmp_path):
    home = tmp_path / "home"
    state.load_state(home)
    folder = home / "cca"
    info = json.loads((folder / "platform.json").read_text())
    info["instance_id"] = "01" + "00" * 32
    path = folder / "platform.json"
    os.chmod(path, 0o644)
    path.write_text(json.dumps(info))
    with pytest.raises(SimStateError, match="sim reset"):
        state.read_state(folder)  # the manifest's digest no longer matches


def test_a_readable_private_key_is_refused(tmp_path):
    home = tmp_path / "home"
    state.load_state(home)
    os.chmod(home / "cca" / state.RAK_KEY, 0o644)
    with pytest.raises(SimStateError, match="readable by others"):
        state.read_state(home / "cca")
