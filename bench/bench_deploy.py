"""Deployment latency on 127.0.0.1: from ``deploy()`` start to the workload's first output.

For each simulated TEE a keep serves in a thread of this process; N deployments of a small
WAT workload (it prints first, then calls get_attestation itself) are timed with
:class:`attestcall.deploy.tenant.DeployTimings` and split into

- attestation: the tenant's checks after the handshake (evidence out of the certificate,
  binding to the key, collateral, ``attestcall.verify`` and policy); the collateral part
  (the simulators' signed collateral, made per deployment) is also shown alone;
- the rest: TCP connect + TLS 1.3 handshake (the certificate carries the evidence), sending
  the workload, the keep compiling and starting it, the first OUTPUT frame back.

The keep's own evidence fetch (get_attestation through the shim and the simulated host,
once per keep when it makes its identity) is timed separately. The baseline, measured in
the same run against the same server, is a plain TLS connection: connect + handshake + one
round trip (a HELLO of an unknown version, answered by ERROR). Medians of N.

    python bench/bench_deploy.py [N]
"""

from __future__ import annotations

import io
import socket
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

from attestcall.deploy import protocol
from attestcall.deploy.identity import attest, make_identity
from attestcall.deploy.keys import binding_nonce
from attestcall.deploy.server import KeepServer
from attestcall.deploy.tenant import DeployTimings, deploy, provision_sev, simulated_collateral
from attestcall.keep.platforms import open_keep
from attestcall.tls import TlsSocket, client_context

WORKLOAD = (Path(__file__).resolve().parent.parent / "tests" / "deploy" / "workload.wat")
TEES = ("sgx-sim", "snp-sim", "tdx-sim")


def plain_round_trip(address: tuple[str, int]) -> float:
    start = time.perf_counter()
    with socket.create_connection(address) as raw:
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as deploy() does
        with TlsSocket.connect(client_context(), raw, 10.0) as tls:
            tls.sendall(protocol.hello(0xFFFF))
            decoder = protocol.FrameDecoder(protocol.KEEP_FRAMES)
            while not decoder.feed(tls.recv(4096)):
                pass
    return time.perf_counter() - start


def measure(tee: str, n: int) -> dict[str, Any]:
    workload = WORKLOAD.read_bytes()
    with open_keep(tee, b"") as keep:
        identity = make_identity(keep.source)
        nonce = binding_nonce(identity.private_key.public_key())
        fetch = []
        for _ in range(n):
            start = time.perf_counter()
            attest(keep.source, nonce)
            fetch.append(time.perf_counter() - start)
        server = KeepServer(keep.source, identity)
        address = server.bind(("127.0.0.1", 0))
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        collateral_times: list[float] = []

        def timed_collateral(technology: str, evidence: bytes) -> Any:
            start = time.perf_counter()
            try:
                return simulated_collateral(technology, evidence)
            finally:
                collateral_times.append(time.perf_counter() - start)

        try:
            rows = []
            baseline = []
            for _ in range(n):
                baseline.append(plain_round_trip(address))
                timings = DeployTimings()
                collateral_times.clear()
                deploy(address, workload, [], trust_simulated=True,
                       collateral_for=timed_collateral, stdout=io.BytesIO(),
                       stderr=io.BytesIO(), timings=timings)
                assert timings.first_output is not None
                total = timings.first_output - timings.start
                attestation = timings.trusted - timings.handshake_done
                rows.append((total, attestation, sum(collateral_times)))
        finally:
            server.close()
            thread.join(5)
    return {
        "tee": tee,
        "cert_bytes": len(identity.certificate_der),
        "fetch": statistics.median(fetch),
        "total": statistics.median(r[0] for r in rows),
        "attestation": statistics.median(r[1] for r in rows),
        "collateral": statistics.median(r[2] for r in rows),
        "rest": statistics.median(r[0] - r[1] for r in rows),
        "baseline": statistics.median(baseline),
    }


def measure_sev(n: int) -> dict[str, Any]:
    """sev-sim: each round provisions a fresh unprovisioned keep over the network (chain,
    session, measurement, LAUNCH_SECRET with a P-384 key), then deploys over TLS pinned to
    that key. "attestation" is the provisioning; there is no evidence to verify after."""
    from attestcall.amd.sim.sev import SimulatedSevFirmware, load_state
    from attestcall.amd.sim.sev.keep import SevProvisioner, expected_digest
    from attestcall.verifier.policy import Policy

    workload = WORKLOAD.read_bytes()
    policy = Policy.parse({"sev": {"launch_digest": [expected_digest(b"").hex()]}})
    firmware = SimulatedSevFirmware(load_state())
    rows, baseline, cert_bytes = [], [], 0
    for _ in range(n):
        server = KeepServer(None, None, provisioner=SevProvisioner(firmware, b""))
        address = server.bind(("127.0.0.1", 0))
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            start = time.perf_counter()
            key = provision_sev(address, policy=policy, trust_simulated=True)
            provisioned = time.perf_counter()
            timings = DeployTimings()
            deploy(address, workload, [], expected_public_key=key, stdout=io.BytesIO(),
                   stderr=io.BytesIO(), timings=timings)
            assert timings.first_output is not None
            total = (provisioned - start) + (timings.first_output - timings.start)
            rows.append((total, provisioned - start))
            baseline.append(plain_round_trip(address))
            cert_bytes = len(server.identity.certificate_der) if server.identity else 0
        finally:
            server.close()
            thread.join(5)
    return {
        "tee": "sev-sim",
        "cert_bytes": cert_bytes,
        "fetch": 0.0,
        "total": statistics.median(r[0] for r in rows),
        "attestation": statistics.median(r[1] for r in rows),
        "collateral": 0.0,
        "rest": statistics.median(r[0] - r[1] for r in rows),
        "baseline": statistics.median(baseline),
    }


def main(argv: list[str]) -> int:
    n = int(argv[1]) if len(argv) > 1 else 20
    ms = 1000.0
    print(f"deploy to first output on 127.0.0.1, median of {n} (milliseconds)")
    print(f"{'tee':8} {'cert':>6} {'fetch*':>7} {'total':>7} {'attest':>7} {'(coll.)':>8} "
          f"{'rest':>7} {'plainTLS':>9} {'total/TLS':>10}")
    for tee in (*TEES, "sev-sim"):
        r = measure_sev(n) if tee == "sev-sim" else measure(tee, n)
        print(f"{r['tee']:8} {r['cert_bytes']:>6} {r['fetch'] * ms:7.2f} {r['total'] * ms:7.2f} "
              f"{r['attestation'] * ms:7.2f} {r['collateral'] * ms:8.2f} {r['rest'] * ms:7.2f} "
              f"{r['baseline'] * ms:9.2f} {r['total'] / r['baseline']:10.1f}")
    print("cert: certificate bytes; fetch*: the keep's get_attestation (once per keep, not per "
          "deploy);\nattest: tenant's checks incl. collateral (coll.); rest: connect, handshake, "
          "send, compile, first output;\nplainTLS: connect + handshake + one round trip to the "
          "same server.\nsev-sim: attest = provisioning over the network (chain, session, "
          "measurement, LAUNCH_SECRET), a fresh keep each round.")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
