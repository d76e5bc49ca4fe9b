"""Deploy a Wasm workload to a simulated keep on 127.0.0.1: the output and the exit status
come back, the workload's own get_attestation is answered by the same keep."""

from __future__ import annotations

import io
import socket
import ssl
import threading

import pytest

from attestcall.deploy import ServerSettings, deploy, protocol, serve
from attestcall.deploy.keys import spki_der
from attestcall.deploy.tenant import (
    DeployRefused,
    DeployTimings,
    KeepFailed,
    simulated_collateral,
    workload_binary,
)
from tests.deploy.conftest import SIM_TEES, TECHNOLOGY, expected_stdout, running_keep, settled

SPIN_WAT = b"""
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "tick\\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 5))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
    (loop $forever (br $forever))))
"""


@pytest.mark.parametrize("tee", SIM_TEES)
def test_workload_runs_in_an_attested_keep(tee, workload):
    with running_keep(tee) as server:
        out, err = io.BytesIO(), io.BytesIO()
        status = deploy(server.address, workload, ["an", "argument"], trust_simulated=True,
                        stdout=out, stderr=err)
        assert status == 40 + TECHNOLOGY[tee]
        assert out.getvalue() == expected_stdout(tee, len(server.identity.evidence))
        assert err.getvalue() == b"a line on stderr\n"
        assert server.stats.workloads_run == 1


def test_simulated_evidence_is_refused_unless_trusted(workload):
    with running_keep("sgx-sim") as server:
        # no collateral given: the simulators' is used, and the keep refused for what it is
        with pytest.raises(DeployRefused, match="the evidence is simulated; pass "
                                                "--trust-simulated") as bare:
            deploy(server.address, workload, [], stdout=io.BytesIO(), stderr=io.BytesIO())
        assert bare.value.verdict is not None and bare.value.verdict.simulated
        with pytest.raises(DeployRefused) as refused:
            deploy(server.address, workload, [], collateral_for=simulated_collateral,
                   stdout=io.BytesIO(), stderr=io.BytesIO())
        assert refused.value.verdict is not None and refused.value.verdict.simulated
        assert settled(server).workload_bytes == 0


def test_concurrent_tenants(workload):
    results: list[tuple[int, bytes]] = []
    errors: list[BaseException] = []

    def tenant(server):
        out = io.BytesIO()
        try:
            status = deploy(server.address, workload, [], trust_simulated=True, stdout=out,
                            stderr=io.BytesIO())
            results.append((status, out.getvalue()))
        except BaseException as exc:  # reported below
            errors.append(exc)

    with running_keep("sgx-sim", ServerSettings(max_tenants=4)) as server:
        threads = [threading.Thread(target=tenant, args=(server,)) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not errors, errors
        expected = expected_stdout("sgx-sim", len(server.identity.evidence))
        assert results == [(42, expected)] * 8
        assert server.stats.workloads_run == 8


def test_output_streams_while_the_workload_runs():
    with running_keep("sgx-sim", ServerSettings(run_timeout=1.5)) as server:
        out, err = io.BytesIO(), io.BytesIO()
        timings = DeployTimings()
        status = deploy(server.address, SPIN_WAT, [], trust_simulated=True, stdout=out,
                        stderr=err, timings=timings)
        assert status == 134  # the run-time limit traps the spinning module
        assert out.getvalue() == b"tick\n"
        assert b"interrupt" in err.getvalue()
        assert timings.first_output is not None
        assert timings.exit - timings.first_output > 1.0  # "tick" arrived long before EXIT


def test_none_keep_runs_when_the_policy_allows_it(workload):
    with running_keep("none") as server:
        out = io.BytesIO()
        status = deploy(server.address, workload, [], allow_none=True, stdout=out,
                        stderr=io.BytesIO())
        assert (status, out.getvalue()) == (40, expected_stdout("none", 0))


def test_pinned_key_replaces_evidence(workload):
    """The SEV hook: the certificate's key must be the pinned one; no evidence needed."""
    with running_keep("none") as server:
        pinned = spki_der(server.identity.private_key.public_key())
        status = deploy(server.address, workload, [], expected_public_key=pinned,
                        stdout=io.BytesIO(), stderr=io.BytesIO())
        assert status == 40
        with running_keep("none") as other:
            with pytest.raises(DeployRefused, match="not the key delivered at launch"):
                deploy(other.address, workload, [], expected_public_key=pinned,
                       stdout=io.BytesIO(), stderr=io.BytesIO())
            assert settled(other).workload_bytes == 0


def test_required_key_type(workload):
    with running_keep("snp-sim") as server:  # P-384 by default, as the VCEK
        status = deploy(server.address, workload, [], trust_simulated=True, key_type="p384",
                        stdout=io.BytesIO(), stderr=io.BytesIO())
        assert status == 43
        with pytest.raises(DeployRefused, match="the tenant requires p256"):
            deploy(server.address, workload, [], trust_simulated=True, key_type="p256",
                   stdout=io.BytesIO(), stderr=io.BytesIO())
        assert settled(server).workload_bytes > 0  # only the first tenant's
        before = server.stats.workload_bytes
        with pytest.raises(DeployRefused):
            deploy(server.address, workload, [], trust_simulated=True, key_type="ed25519",
                   stdout=io.BytesIO(), stderr=io.BytesIO())
        assert settled(server).workload_bytes == before


@pytest.mark.parametrize("key_type", ["p256", "p384", "ed25519", "rsa3072"])
def test_every_tls_key_type_deploys(key_type, workload):
    with running_keep("tdx-sim", ServerSettings(key_type=key_type)) as server:
        status = deploy(server.address, workload, [], trust_simulated=True, key_type=key_type,
                        stdout=io.BytesIO(), stderr=io.BytesIO())
        assert status == 44


def test_invalid_module_gets_an_error_and_the_keep_carries_on(workload):
    with running_keep("sgx-sim") as server:
        with pytest.raises(KeepFailed, match="invalid WebAssembly module"):
            deploy(server.address, b"\0asm\x01\0\0\0garbage", [], trust_simulated=True,
                   stdout=io.BytesIO(), stderr=io.BytesIO())
        assert deploy(server.address, workload, [], trust_simulated=True,
                      stdout=io.BytesIO(), stderr=io.BytesIO()) == 42


def test_serve_once_prints_its_address_and_returns(workload):
    ready = threading.Event()
    address: list[tuple[str, int]] = []
    out, log = io.StringIO(), io.StringIO()

    def on_ready(host, port):
        address.append((host, port))
        ready.set()

    thread = threading.Thread(
        target=serve, args=("tdx-sim", ("127.0.0.1", 0)),
        kwargs={"once": True, "ready": on_ready, "out": out, "log": log}, daemon=True,
    )
    thread.start()
    assert ready.wait(30)
    host, port = address[0]
    assert f"listening on 127.0.0.1:{port}" in out.getvalue()
    assert deploy((host, port), workload, [], trust_simulated=True, stdout=io.BytesIO(),
                  stderr=io.BytesIO()) == 44
    thread.join(10)
    assert not thread.is_alive()
    assert "exit 44" in log.getvalue()


# ------------------------------------------------------------------ key exchange


def test_deploy_negotiates_the_hybrid_group_and_reports_it(workload):
    seen = []
    with running_keep("sgx-sim") as server:
        status = deploy(server.address, workload, [], trust_simulated=True,
                        stdout=io.BytesIO(), stderr=io.BytesIO(), on_trusted=seen.append)
        assert status == 40 + TECHNOLOGY["sgx-sim"]
        assert settled(server).groups == {"X25519MLKEM768": 1}
    (connection,) = seen
    assert (connection.version, connection.group, connection.key_type) == \
        ("TLSv1.3", "X25519MLKEM768", "p256")
    assert connection.address == server.address
    assert connection.describe() == "TLS 1.3, key exchange X25519MLKEM768, keep key p256"


def test_a_classical_only_tenant_still_reaches_the_keep_on_x25519(workload):
    """Python's ssl module (the system OpenSSL: no ML-KEM) is served, on X25519."""
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname, client.verify_mode = False, ssl.CERT_NONE
    with running_keep("tdx-sim") as server:
        with socket.create_connection(server.address, timeout=10) as raw, \
                client.wrap_socket(raw) as tls:
            tls.sendall(protocol.hello() + b"".join(protocol.workload_frames(
                workload_binary(workload), [])))
            frames = read_frames_ssl(tls)
        assert frames[-1].type == protocol.FrameType.EXIT
        assert protocol.parse_exit(frames[-1].payload) == 40 + TECHNOLOGY["tdx-sim"]
        assert settled(server).groups == {"x25519": 1}


def read_frames_ssl(tls: ssl.SSLSocket) -> list[protocol.Frame]:
    decoder = protocol.FrameDecoder(protocol.KEEP_FRAMES)
    frames: list[protocol.Frame] = []
    while data := tls.recv(65536):
        frames += decoder.feed(data)
        if frames and frames[-1].type in (protocol.FrameType.EXIT, protocol.FrameType.ERROR):
            break
    return frames


def test_a_tenant_offering_no_group_in_common_is_refused_and_sends_nothing(workload):
    log = io.StringIO()
    with running_keep("sgx-sim") as server:
        server.log = log
        with pytest.raises(DeployRefused) as caught:
            deploy(server.address, workload, [], trust_simulated=True, groups=("secp384r1",),
                   stdout=io.BytesIO(), stderr=io.BytesIO())
        stats = settled(server)
        assert stats.workload_bytes == 0 and stats.handshake_failures == 1
    (reason,) = caught.value.reasons
    assert reason == ("the TLS handshake with the keep failed: tls alert handshake failure "
                      "(this tenant offers TLS 1.3 with key exchange secp384r1)")
    assert "TLS handshake failed: no suitable key share" in log.getvalue()
