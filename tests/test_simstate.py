import json
import multiprocessing
import os
import shutil
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from attestcall import simstate
from attestcall.errors import SimStateError
from attestcall.intel.sim.sgx import SgxState, load_state, read_state
from attestcall.tees import registry


@pytest.fixture(scope="module")
def session_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.getbasetemp() / "attestcall-home"
    load_state(home)
    return home


@pytest.fixture
def copied_home(session_home: Path, tmp_path: Path) -> Path:
    """A private copy of the session's state (cheap: no key generation)."""
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    shutil.copytree(session_home / "sgx", home / "sgx")  # copies modes too
    return home


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def root_fingerprint(state: SgxState) -> bytes:
    return state.root_cert.fingerprint(state.root_cert.signature_hash_algorithm)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- the home


def test_sim_home_prefers_attestcall_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ATTESTCALL_HOME", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert simstate.sim_home() == tmp_path / "explicit"


def test_sim_home_uses_xdg_data_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("ATTESTCALL_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert simstate.sim_home() == tmp_path / "xdg" / "attestcall"


def test_sim_home_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("ATTESTCALL_HOME")
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert simstate.sim_home() == tmp_path / ".local" / "share" / "attestcall"


def test_conftest_home_is_used(session_home: Path) -> None:
    assert simstate.sim_home() == session_home
    assert load_state().folder == (session_home / "sgx").resolve()


def test_permissions(session_home: Path) -> None:
    assert mode(session_home) == 0o700
    folder = session_home / "sgx"
    assert mode(folder) == 0o700
    secrets = [p for p in folder.iterdir() if p.name.endswith(".key.pem")]
    assert len(secrets) == 6
    for path in [*secrets, folder / "cpu_secret.bin"]:
        assert mode(path) == 0o600, path
    for path in secrets:
        assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8
    assert mode(folder / "root_ca.pem") & 0o077 == 0o044  # certificates are public


def test_private_files_are_never_world_readable(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        simstate.write_private_key(tmp_path / "k.pem", ec.generate_private_key(ec.SECP256R1()))
        simstate.write_private(tmp_path / "s.bin", b"secret")
    finally:
        os.umask(old)
    assert mode(tmp_path / "k.pem") == 0o600
    assert mode(tmp_path / "s.bin") == 0o600
    with pytest.raises(FileExistsError):
        simstate.write_private(tmp_path / "s.bin", b"again")


def test_new_home_is_private(tmp_path: Path) -> None:
    home = simstate.ensure_home(tmp_path / "a" / "b")
    assert mode(home) == 0o700


# ----------------------------------------------------------------- creation and reset


def fake_create(folder: Path) -> None:
    simstate.write_private(folder / "secret.bin", os.urandom(8))
    simstate.write_manifest(folder, "fake", ["secret.bin"])


def test_losing_a_creation_race_uses_the_winner(tmp_path: Path) -> None:
    winner: list[Path] = []

    def slow_create(folder: Path) -> None:
        fake_create(folder)
        # Another process finishes first while this one is still writing.
        winner.append(simstate.platform_dir("fake", fake_create, tmp_path))

    folder = simstate.platform_dir("fake", slow_create, tmp_path)
    assert folder == winner[0] == tmp_path / "fake"
    simstate.check_manifest(folder, "fake")
    assert [p.name for p in tmp_path.iterdir()] == ["fake"]  # no temporary left behind


def test_failed_creation_leaves_nothing(tmp_path: Path) -> None:
    def broken(folder: Path) -> None:
        (folder / "half").write_bytes(b"x")
        raise OSError(28, "No space left on device")

    with pytest.raises(SimStateError, match="No space"):
        simstate.platform_dir("fake", broken, tmp_path)
    assert list(tmp_path.iterdir()) == []


def _create_in_child(home: str, barrier: Any, results: Any) -> None:
    barrier.wait()
    state = load_state(home)
    results.put((root_fingerprint(state), state.folder.as_posix()))


def test_two_processes_creating_at_once_agree(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(2)
    results = context.Queue()
    children = [
        context.Process(target=_create_in_child, args=(str(tmp_path), barrier, results))
        for _ in range(2)
    ]
    for child in children:
        child.start()
    outcomes = [results.get(timeout=60) for _ in children]
    for child in children:
        child.join(timeout=60)
        assert child.exitcode == 0
    assert outcomes[0] == outcomes[1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sgx"]
    assert root_fingerprint(load_state(tmp_path)) == outcomes[0][0]


def test_reset_makes_new_keys(tmp_path: Path) -> None:
    before = load_state(tmp_path)
    simstate.reset(tmp_path)
    after = load_state(tmp_path)
    assert after is not before
    assert root_fingerprint(after) != root_fingerprint(before)
    assert after.attestation_key.public_key() != before.attestation_key.public_key()
    assert after.cpu_secret != before.cpu_secret
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(simstate.platforms())


def test_reset_repairs_a_corrupt_state(copied_home: Path) -> None:
    (copied_home / "sgx" / "pck.pem").write_bytes(b"junk")
    with pytest.raises(SimStateError):
        load_state(copied_home)
    simstate.reset(copied_home)
    assert "SIMULATED" in load_state(copied_home).root_cert.subject.rfc4514_string()


# ------------------------------------------------------------------------- corruption


def corrupt_by(home: Path, action: str) -> None:
    folder = home / "sgx"
    if action == "missing-file":
        (folder / "pck.key.pem").unlink()
    elif action == "altered-file":
        (folder / "platform.json").write_bytes(b"{}")
    elif action == "missing-manifest":
        (folder / "state.json").unlink()
    elif action == "garbage-manifest":
        (folder / "state.json").write_bytes(b"\x00not json")
    elif action == "wrong-platform-manifest":
        manifest = json.loads((folder / "state.json").read_bytes())
        manifest["platform"] = "snp"
        (folder / "state.json").write_text(json.dumps(manifest))
    elif action == "world-readable-key":
        (folder / "qe_attestation.key.pem").chmod(0o644)
    elif action == "swapped-key":
        # Consistent manifest, but the PCK key no longer matches the PCK certificate.
        (folder / "pck.key.pem").unlink()
        shutil.copy2(folder / "root_ca.key.pem", folder / "pck.key.pem")
        manifest = json.loads((folder / "state.json").read_bytes())
        names = list(manifest["files"])
        (folder / "state.json").unlink()
        simstate.write_manifest(folder, "sgx", names)
    elif action == "empty-folder":
        shutil.rmtree(folder)
        folder.mkdir(mode=0o700)


@pytest.mark.parametrize(
    "action",
    [
        "missing-file",
        "altered-file",
        "missing-manifest",
        "garbage-manifest",
        "wrong-platform-manifest",
        "world-readable-key",
        "swapped-key",
        "empty-folder",
    ],
)
def test_corrupt_state_raises_sim_state_error(copied_home: Path, action: str) -> None:
    assert read_state(copied_home / "sgx")  # intact copy loads
    corrupt_by(copied_home, action)
    with pytest.raises(SimStateError, match="attestcall sim reset"):
        load_state(copied_home)
    with pytest.raises(SimStateError):
        simstate.describe(copied_home)


def test_cache_notices_a_state_replaced_on_disk(copied_home: Path) -> None:
    first = load_state(copied_home)
    assert load_state(copied_home) is first
    shutil.rmtree(copied_home / "sgx")
    (copied_home / "sgx").mkdir(mode=0o700)
    # An empty folder where the state was: not silently served from the cache.
    with pytest.raises(SimStateError):
        load_state(copied_home)


# --------------------------------------------------------------------------- describe


def test_describe(session_home: Path) -> None:
    state = load_state(session_home)
    text = simstate.describe(session_home)
    assert str(session_home) in text
    for cert in (state.root_cert, state.platform_ca_cert, state.pck_cert):
        assert cert.subject.rfc4514_string() in text
    assert "SIMULATED" in text
    assert state.fmspc.hex().upper() in text
    assert "PCE-ID 0000" in text
    assert "ECDSA P-256" in text and "RSA-3072" in text
    assert "TCB levels" in text and "UpToDate" in text
    assert state.qe_identity.mrsigner.hex() in text
    assert "ISVPRODID 1" in text


def test_platforms_are_registered_by_one_line() -> None:
    assert simstate.platforms()["sgx"] is registry().get("sgx").sim_state


# --------------------------------------------------------------------------- roots read


def test_simulated_roots_are_read_once_and_read_again_when_they_change(
        copied_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cryptography.hazmat.primitives.serialization import Encoding

    monkeypatch.setenv("ATTESTCALL_HOME", str(copied_home))
    root = load_state(copied_home).root_cert
    reads: list[Path] = []
    original = Path.read_bytes

    def counting(path: Path) -> bytes:
        reads.append(path)
        return original(path)

    monkeypatch.setattr(Path, "read_bytes", counting)
    first = simstate.read_certificates("sgx", "root_ca.pem")
    assert first == [root]
    assert simstate.read_certificates("sgx", "root_ca.pem") == first
    assert len(reads) == 1  # the second call only looked at the files
    # a new root published in its place (as the simulator writes: a rename) is seen
    (replacement,) = simstate.read_certificates("sgx", "pck_platform_ca.pem")
    staged = copied_home / "sgx" / ".root_ca.pem.new"
    staged.write_bytes(replacement.public_bytes(Encoding.PEM))
    os.replace(staged, copied_home / "sgx" / "root_ca.pem")
    assert simstate.read_certificates("sgx", "root_ca.pem") == [replacement]
    # the folder replaced (sim reset renames it away): no roots, then the new ones
    shutil.rmtree(copied_home / "sgx")
    assert simstate.read_certificates("sgx", "root_ca.pem") == []
    (copied_home / "sgx").mkdir()
    (copied_home / "sgx" / "root_ca.pem").write_bytes(b"not a certificate")
    assert simstate.read_certificates("sgx", "root_ca.pem") == []
