"""SEV pre-attestation over the network: an unprovisioned sev-sim keep on 127.0.0.1 is
provisioned by the tenant (chain, LAUNCH_START, measurement checked against the policy's
[sev] launch_digest, secret), then serves TLS with the delivered key, which the tenant
pins."""

from __future__ import annotations

import contextlib
import io
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import mldsa

from attestcall import der
from attestcall.amd.sim.sev import SimulatedSevFirmware, load_state
from attestcall.amd.sim.sev.keep import SevProvisioner, expected_digest
from attestcall.deploy import protocol, provision_tenant
from attestcall.deploy import provisioning as pv
from attestcall.deploy import tenant as tenant_module
from attestcall.deploy.keys import KEY_TYPES, spki_der
from attestcall.deploy.protocol import FrameType
from attestcall.deploy.server import KeepServer, ServerSettings
from attestcall.deploy.tenant import DeployRefused, deploy, trusted_sev_arks
from attestcall.tls import TlsError
from tests import paths
from tests.deploy.conftest import raw_tls, running_keep, settled

REPO = paths.REPO
DIGEST = expected_digest(b"").hex()  # `keep serve` runs the shim with an empty payload
POLICY = {"sev": {"launch_digest": [DIGEST]}}

# Prints "technology: N\n" then the raw evidence get_attestation gave; exits 40 + N.
EVIDENCE_WAT = b"""
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (import "attestation" "get_attestation"
    (func $get_attestation (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (data (i32.const 256) "technology: ")
  (func $write (param $ptr i32) (param $len i32)
    (i32.store (i32.const 128) (local.get $ptr))
    (i32.store (i32.const 132) (local.get $len))
    (drop (call $fd_write (i32.const 1) (i32.const 128) (i32.const 1) (i32.const 136))))
  (func (export "_start") (local $size i32) (local $n i32)
    (local.set $size
      (call $get_attestation (i32.const 0) (i32.const 64) (i32.const 0) (i32.const 0)
                             (i32.const 64)))
    (if (i32.le_s (local.get $size) (i32.const 0)) (then (call $proc_exit (i32.const 20))))
    (local.set $n
      (call $get_attestation (i32.const 0) (i32.const 64) (i32.const 4096)
                             (local.get $size) (i32.const 64)))
    (if (i32.ne (local.get $n) (local.get $size)) (then (call $proc_exit (i32.const 21))))
    (call $write (i32.const 256) (i32.const 12))
    (i32.store8 (i32.const 300) (i32.add (i32.const 48) (i32.load (i32.const 64))))
    (i32.store8 (i32.const 301) (i32.const 10))
    (call $write (i32.const 300) (i32.const 2))
    (call $write (i32.const 4096) (local.get $n))
    (call $proc_exit (i32.add (i32.const 40) (i32.load (i32.const 64))))))
"""


@contextlib.contextmanager
def sev_keep(settings: ServerSettings | None = None) -> Iterator[KeepServer]:
    """An unprovisioned sev-sim keep serving in a thread on 127.0.0.1."""
    provisioner = SevProvisioner(SimulatedSevFirmware(load_state()), b"")
    server = KeepServer(None, None, settings, log=io.StringIO(), provisioner=provisioner)
    server.bind(("127.0.0.1", 0))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.close()
        thread.join(5)


@pytest.fixture
def generated_keys(monkeypatch) -> list:
    """Every key the tenant generates (the test's view of the secret it delivers)."""
    keys: list = []
    original = tenant_module.generate_key

    def recording(key_type):
        key = original(key_type)
        keys.append(key)
        return key

    monkeypatch.setattr(tenant_module, "generate_key", recording)
    return keys


def run(address, **options) -> tuple[int, bytes]:
    out = io.BytesIO()
    options.setdefault("trust_simulated", True)
    status = deploy(address, EVIDENCE_WAT, [], stdout=out, stderr=io.BytesIO(), **options)
    return status, out.getvalue()


def pkcs8(key) -> bytes:
    return key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def provisioning(address) -> socket.socket:
    """A raw provisioning connection past the magic and an UNPROVISIONED status."""
    sock = socket.create_connection(address, timeout=10)
    sock.sendall(pv.MAGIC)
    frames = keep_frames(sock, 1)
    assert frames == [protocol.Frame(FrameType.PV_STATUS, bytes([pv.UNPROVISIONED]))]
    return sock


def keep_frames(sock: socket.socket, count: int | None = None) -> list[protocol.Frame]:
    decoder = protocol.FrameDecoder(pv.KEEP_FRAMES, pv.MAX_PAYLOAD)
    frames: list[protocol.Frame] = []
    while count is None or len(frames) < count:
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            break
        if not data:
            break
        frames += decoder.feed(data)
    return frames


# ------------------------------------------------------------------------ the good path


@pytest.mark.parametrize("key_type", KEY_TYPES)
def test_provisioned_keep_runs_the_workload_with_the_delivered_key(key_type, generated_keys):
    with sev_keep() as server:
        assert not server.provisioned
        status, out = run(server.address, policy=POLICY, key_type=key_type)
        assert status == 41
        (key,) = generated_keys
        assert out == b"technology: 1\n" + pkcs8(key)
        assert server.provisioned and server.stats.provisioned == 1
        assert spki_der(server.identity.certificate.public_key()) == spki_der(key.public_key())
        assert server.stats.workloads_run == 1


def test_default_key_type_is_p384_and_the_pinned_keep_serves_again(generated_keys):
    with sev_keep() as server:
        assert run(server.address, policy=POLICY)[0] == 41
        (key,) = generated_keys
        assert key.curve.name == "secp384r1"
        pinned = spki_der(key.public_key())
        # already provisioned: a tenant that knows the key pins it directly
        status, out = run(server.address, expected_public_key=pinned)
        assert status == 41 and out.endswith(pkcs8(key))
        # a tenant that does not is refused: the certificate carries no evidence
        with pytest.raises(DeployRefused, match="no attestation evidence"):
            run(server.address, policy=POLICY)
        assert len(generated_keys) == 1  # no key generated for a provisioned keep
        assert server.stats.provisioned == 1


@pytest.mark.parametrize("key_type", [None, "mldsa65"])
def test_cli_keep_serve_sev_sim_and_deploy(tmp_path, key_type):
    """The case the seed design was written for, with ``--key-type mldsa65``: an ML-DSA-65
    key delivered through LAUNCH_SECRET, then TLS with it (X25519MLKEM768)."""
    policy = tmp_path / "policy.toml"
    policy.write_text(f'[sev]\nlaunch_digest = ["{DIGEST}"]\n')
    keep = subprocess.Popen(
        [sys.executable, "-m", "attestcall", "keep", "serve", "--tee", "sev-sim", "--listen",
         "127.0.0.1:0", "--once"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = keep.stdout.readline()
        assert "listening on" in line, line + keep.stderr.read()
        address = line.rsplit(" ", 1)[1].strip()
        result = subprocess.run(
            [sys.executable, "-m", "attestcall", "deploy", "--keep", address,
             "--trust-simulated", "--policy", str(policy),
             *(["--key-type", key_type] if key_type else []),
             str(REPO / "examples/hello.wat")],
            capture_output=True, text=True, timeout=120)
    finally:
        keep.wait(timeout=60)
    keep_log = keep.stderr.read()
    assert result.returncode == 0, result.stderr + keep_log
    assert result.stdout.splitlines()[0] == "technology: 1"
    assert (f"attestcall deploy: keep {address} trusted: TLS 1.3, key exchange "
            f"X25519MLKEM768, keep key {key_type or 'p384'}") in result.stderr.splitlines()
    assert keep.returncode == 0, keep_log
    assert DIGEST in keep_log


# ------------------------------------------------------------------------ refusals


def test_measurement_not_in_the_policy_is_refused_and_the_keep_stays_open(generated_keys):
    with sev_keep() as server:
        wrong = {"sev": {"launch_digest": ["00" * 32, "11" * 32]}}
        with pytest.raises(DeployRefused, match="matches no \\[sev\\] launch_digest"):
            run(server.address, policy=wrong)
        stats = settled(server)
        assert stats.workload_bytes == 0 and stats.provisioned == 0
        assert not server.provisioned
        # a later tenant with the right digest provisions it
        assert run(server.address, policy=POLICY)[0] == 41
        assert server.provisioned


def test_a_policy_without_launch_digests_is_refused_and_says_so():
    with sev_keep() as server:
        with pytest.raises(DeployRefused, match="lists no \\[sev\\] launch_digest"):
            run(server.address)
        with pytest.raises(DeployRefused, match="lists no \\[sev\\] launch_digest"):
            run(server.address, policy={"sev": {"allow_debug": False}})
        assert settled(server).workload_bytes == 0 and not server.provisioned


def test_an_untrusted_platform_chain_is_refused():
    with sev_keep() as server:
        with pytest.raises(DeployRefused, match="no trusted AMD SEV root"):
            run(server.address, policy=POLICY, trust_simulated=False)
        assert settled(server).workload_bytes == 0 and not server.provisioned


def test_firmware_refusals_are_error_frames_and_the_keep_stays_unprovisioned():
    with sev_keep() as server:
        with provisioning(server.address) as sock:
            sock.sendall(pv.frame(FrameType.PV_MEASURE))  # before LAUNCH_START
            (frame,) = keep_frames(sock)
            assert frame.type == FrameType.ERROR
            assert "LAUNCH_START has not been done" in protocol.parse_error(frame.payload)
        with provisioning(server.address) as sock:
            sock.sendall(pv.frame(FrameType.PV_START, pv.start_payload(b"junk", b"", 1)))
            (frame,) = keep_frames(sock)
            assert frame.type == FrameType.ERROR
            assert "InvalidCertificate" in protocol.parse_error(frame.payload)
        with provisioning(server.address) as sock:
            sock.sendall(pv.frame(FrameType.PV_START, b"\1"))  # malformed
            (frame,) = keep_frames(sock)
            assert frame.type == FrameType.ERROR
        assert settled(server).provisioning_refusals == 3
        assert not server.provisioned
        assert run(server.address, policy=POLICY)[0] == 41


def test_an_unprovisioned_keep_closes_tls_connections():
    with sev_keep() as server:
        with pytest.raises(TlsError), raw_tls(server.address):
            pass
        assert settled(server).unprovisioned_tls == 1


class Redirector:
    """A hostile host: the first connection (provisioning) goes to ``first``, every later
    one (TLS) to ``then``. Plain TCP relay."""

    def __init__(self, first: tuple[str, int], then: tuple[str, int]):
        self.targets = [first]
        self.then = then
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = self.listener.getsockname()[:2]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                tenant, _ = self.listener.accept()
            except OSError:
                return
            target = self.targets.pop() if self.targets else self.then
            keep = socket.create_connection(target)
            for a, b in ((tenant, keep), (keep, tenant)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.listener.close()


def test_a_keep_without_the_provisioned_key_is_refused(generated_keys):
    with sev_keep() as genuine, sev_keep() as other:
        assert run(other.address, policy=POLICY)[0] == 41  # provisioned by someone else
        before = other.stats.workload_bytes
        proxy = Redirector(genuine.address, other.address)
        try:
            with pytest.raises(DeployRefused, match="not the key delivered at launch"):
                run(proxy.address, policy=POLICY)
        finally:
            proxy.close()
        assert genuine.provisioned  # our key went to the genuine launch...
        assert settled(other).workload_bytes == before  # ...and nothing to the other keep
        assert settled(genuine).workload_bytes == 0


# ------------------------------------------------------------------------ other keeps


def test_a_non_sev_keep_answers_the_magic_and_still_serves(workload):
    with running_keep("sgx-sim") as server:
        with socket.create_connection(server.address, timeout=10) as sock:
            sock.sendall(pv.MAGIC)
            assert keep_frames(sock) == [
                protocol.Frame(FrameType.PV_STATUS, bytes([pv.NOT_PREATTESTATION]))]
        # a tenant whose policy also lists SEV digests probes first, then attests as usual
        status = deploy(server.address, workload, [], policy=POLICY, trust_simulated=True,
                        stdout=io.BytesIO(), stderr=io.BytesIO())
        assert status == 42
        assert settled(server).handshake_failures == 0


def mldsa65_pkcs8_with_seed(length: int) -> bytes:
    """A PKCS#8 PrivateKeyInfo naming ML-DSA-65 whose seed is ``length`` bytes (32 is
    right)."""
    algorithm = der.encode_sequence(der.encode_oid("2.16.840.1.101.3.4.3.18"))
    seed = der.encode_tlv(0x80, bytes(range(length)))
    return der.encode_sequence(der.encode_integer(0), algorithm, der.encode_octet_string(seed))


def test_a_wrong_length_mldsa_key_in_the_launch_secret_is_refused_in_one_line():
    """A PKCS#8 blob claiming ML-DSA-65 with a 31-byte seed: the keep refuses the launch
    in one line, serves no TLS, and a good tenant provisions it afterwards."""
    good = serialization.load_der_private_key(mldsa65_pkcs8_with_seed(32), None)
    assert isinstance(good, mldsa.MLDSA65PrivateKey)  # the shape is right, only the length
    with sev_keep() as server:
        status, link = provision_tenant.probe(server.address, 10)
        assert status == pv.UNPROVISIONED and link is not None
        reasons = provision_tenant.provision(link, mldsa65_pkcs8_with_seed(31),
                                             [bytes.fromhex(DIGEST)], trusted_sev_arks(True))
        assert reasons == [
            "the SEV keep refused provisioning: KeepAttestationFailed: the SEV launch secret "
            "claims an ML-DSA-65 key in PKCS#8 but is not a valid one (a malformed or "
            f"wrong-length key of {len(mldsa65_pkcs8_with_seed(31))} bytes)"]
        assert not server.provisioned and server.stats.provisioned == 0
        with pytest.raises(TlsError), raw_tls(server.address):
            pass
        assert run(server.address, policy=POLICY, key_type="mldsa65")[0] == 41
        assert server.provisioned
