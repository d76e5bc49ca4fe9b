"""The simulated SEV platform's state on disk."""

from __future__ import annotations

import stat

import pytest

from attestcall import simstate
from attestcall.amd.sim import sev as sev_sim
from attestcall.errors import SimStateError
from attestcall.tees import registry


def test_state_files_and_modes() -> None:
    state = sev_sim.load_state()
    folder = state.folder
    assert simstate.platforms()["sev"] is registry().get("sev").sim_state
    for name in ("ark", "ask", "cek", "oca", "pek", "pdh"):
        assert stat.S_IMODE((folder / f"{name}.key.pem").stat().st_mode) == 0o600
        assert (folder / f"{name}.cert").is_file()
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert state.chain.verify([sev_sim.simulated_ark()]) == state.chain.pdh
    assert len(state.chain.ark.modulus) == 512
    assert "SIMULATED" in (folder / "platform.json").read_text()
    assert "AMD SEV (simulated)" in sev_sim.describe_state(folder)


def test_state_is_stable_across_loads() -> None:
    assert sev_sim.load_state().chain == sev_sim.load_state().chain


def test_corrupt_state_is_reported(tmp_path) -> None:
    sev_sim.load_state(tmp_path)
    folder = tmp_path / "sev"
    (folder / "pdh.cert").chmod(0o644)
    data = bytearray((folder / "pdh.cert").read_bytes())
    data[100] ^= 1
    (folder / "pdh.cert").write_bytes(bytes(data))
    with pytest.raises(SimStateError, match="does not match the manifest"):
        sev_sim.load_state(tmp_path)


def test_readable_private_key_is_refused(tmp_path) -> None:
    sev_sim.load_state(tmp_path)
    (tmp_path / "sev" / "ask.key.pem").chmod(0o644)
    with pytest.raises(SimStateError, match="readable by others"):
        sev_sim.load_state(tmp_path)


def test_pdh_key_must_match_its_certificate(tmp_path) -> None:
    sev_sim.load_state(tmp_path)
    folder = tmp_path / "sev"
    (folder / "pdh.key.pem").chmod(0o600)
    (folder / "pdh.key.pem").unlink()
    (folder / "pek.key.pem").rename(folder / "pdh.key.pem")
    names = [p.name for p in folder.iterdir() if p.name != simstate.MANIFEST]
    (folder / simstate.MANIFEST).unlink()
    (folder / "pek.key.pem").write_bytes(b"")
    (folder / "pek.key.pem").chmod(0o600)
    simstate.write_manifest(folder, "sev", names + ["pek.key.pem"])
    with pytest.raises(SimStateError, match="does not match"):
        sev_sim.load_state(tmp_path)
