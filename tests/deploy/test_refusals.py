"""The tenant refuses untrustworthy keeps before sending a single workload byte.

Every test counts the WORKLOAD bytes the (real) keep received: zero."""

from __future__ import annotations

import contextlib
import io
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from OpenSSL import SSL

from attestcall.deploy import deploy
from attestcall.deploy.identity import KeepIdentity, build_certificate
from attestcall.deploy.keys import generate_key
from attestcall.deploy.tenant import DeployRefused, appraise_certificate
from attestcall.tls import TlsError, TlsSocket, client_context
from tests.deploy.conftest import DEBUG_OPTIONS, SIM_TEES, TECHNOLOGY, running_keep, settled

OTHER_MEASUREMENT = {
    "sgx-sim": {"sgx": {"mrenclave": ["00" * 32]}},
    "tdx-sim": {"tdx": {"mrtd": ["00" * 48]}},
    "snp-sim": {"snp": {"measurement": ["00" * 48]}},
    "cca-sim": {"cca": {"rim": ["00" * 32]}},
}
CLAIM = {"sgx-sim": ("sgx", "mrenclave"), "tdx-sim": ("tdx", "mrtd"),
         "snp-sim": ("snp", "measurement"), "cca-sim": ("cca", "rim")}


def refused(address, workload, **options) -> DeployRefused:
    options.setdefault("trust_simulated", True)
    with pytest.raises(DeployRefused) as caught:
        deploy(address, workload, [], stdout=io.BytesIO(), stderr=io.BytesIO(), **options)
    return caught.value


def impostor_identity(evidence_of: KeepIdentity, key_type: str = "p256") -> KeepIdentity:
    """Its own key, and a certificate carrying another keep's (genuine) evidence."""
    key = generate_key(key_type)
    certificate = build_certificate(key, evidence_of.technology, evidence_of.evidence)
    return KeepIdentity(key, certificate, evidence_of.technology, evidence_of.evidence)


class Relay:
    """A man in the middle on 127.0.0.1: terminates the tenant's TLS with its own identity
    and relays the plaintext to the real keep over a TLS connection of its own."""

    def __init__(self, identity: KeepIdentity, keep_address: tuple[str, int]):
        self.context = identity.server_context()
        self.keep_address = keep_address
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = self.listener.getsockname()[:2]
        self.from_tenant = 0
        self.handshakes = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            raw, _ = self.listener.accept()
        except OSError:
            return
        with raw:
            try:
                tenant = TlsSocket.accept(self.context, raw, 10)
            except OSError:
                return
            self.handshakes += 1
            keep = TlsSocket.connect(client_context(), socket.create_connection(self.keep_address),
                                     10)
            with tenant, keep:
                self._pump(tenant, keep)

    def _pump(self, tenant: TlsSocket, keep: TlsSocket) -> None:
        """Both directions from one thread (an SSL socket must not be read and written
        from two threads at once), polling: records already inside OpenSSL's buffers are
        invisible to select()."""
        peers = {tenant: keep, keep: tenant}
        for sock in peers:
            sock.settimeout(0.02)
        idle_until = time.monotonic() + 10
        with contextlib.suppress(OSError):
            while time.monotonic() < idle_until:
                for sock, other in peers.items():
                    try:
                        data = sock.recv(65536)
                    except TimeoutError:
                        continue
                    if not data:
                        return
                    if sock is tenant:
                        self.from_tenant += len(data)
                    other.settimeout(5)
                    other.sendall(data)
                    other.settimeout(0.02)
                    idle_until = time.monotonic() + 10

    def close(self) -> None:
        self.listener.close()
        self.thread.join(5)


@contextlib.contextmanager
def relay(identity: KeepIdentity, keep_address: tuple[str, int]) -> Iterator[Relay]:
    proxy = Relay(identity, keep_address)
    try:
        yield proxy
    finally:
        proxy.close()


# --------------------------------------------------------------- evidence and binding


@pytest.mark.parametrize("tee", SIM_TEES)
def test_keep_with_its_own_key_but_another_keeps_evidence(tee, workload):
    with running_keep(tee) as genuine:
        with running_keep(tee, keep_identity=impostor_identity(genuine.identity)) as impostor:
            error = refused(impostor.address, workload)
            assert "not bound to this certificate's key" in str(error)
            assert settled(impostor).workload_bytes == 0
            assert settled(impostor).silent_tenants == 1
        assert settled(genuine).workload_bytes == 0


def test_copied_certificate_without_its_key_cannot_even_be_served(workload):
    with running_keep("sgx-sim") as genuine:
        stolen = KeepIdentity(generate_key("p256"), genuine.identity.certificate,
                              genuine.identity.technology, genuine.identity.evidence)
        with pytest.raises(TlsError, match="does not match"):
            stolen.server_context()  # OpenSSL: the key does not match the certificate


def _record_server_flight(address: tuple[str, int]) -> bytes:
    """The bytes a genuine keep sends during one TLS handshake."""
    handshake = SSL.Connection(client_context(), None)  # memory BIOs
    handshake.set_connect_state()
    recorded = bytearray()

    def outgoing() -> bytes:
        try:
            return handshake.bio_read(1 << 20)
        except SSL.WantReadError:
            return b""

    with socket.create_connection(address, timeout=10) as sock:
        while True:
            try:
                handshake.do_handshake()
                break
            except SSL.WantReadError:
                sock.sendall(outgoing())
                data = sock.recv(65536)
                assert data
                recorded += data
                handshake.bio_write(data)
        sock.sendall(outgoing())
    return bytes(recorded)


def test_replayed_certificate_fails_the_handshake(workload):
    """An impostor replaying a genuine keep's handshake (certificate included) without its
    private key: the TLS 1.3 handshake itself fails, nothing is sent."""
    with running_keep("sgx-sim") as genuine:
        flight = _record_server_flight(genuine.address)
        listener = socket.create_server(("127.0.0.1", 0))
        received = []

        def impostor():
            raw, _ = listener.accept()
            with raw:
                raw.settimeout(5)
                raw.recv(65536)  # the ClientHello
                raw.sendall(flight)
                with contextlib.suppress(OSError):
                    while data := raw.recv(65536):
                        received.append(data)

        thread = threading.Thread(target=impostor, daemon=True)
        thread.start()
        error = refused(listener.getsockname()[:2], workload)
        thread.join(5)
        listener.close()
        assert "TLS handshake with the keep failed" in str(error)
        assert sum(map(len, received)) < 64  # at most an alert, never a frame
        assert settled(genuine).workload_bytes == 0


# ---------------------------------------------------------------------------- policy


@pytest.mark.parametrize("tee", SIM_TEES)
def test_measurement_outside_the_policy(tee, workload):
    with running_keep(tee) as server:
        error = refused(server.address, workload, policy=OTHER_MEASUREMENT[tee])
        assert "not in the policy's allow-list" in str(error)
        assert settled(server).workload_bytes == 0
        # The same keep passes once the policy lists its own measurement.
        verdict = appraise_certificate(server.identity.certificate_der, trust_simulated=True)
        table, claim = CLAIM[tee]
        allowed = {table: {claim: [verdict.claims[claim]]}}
        assert deploy(server.address, workload, [], policy=allowed, trust_simulated=True,
                      stdout=io.BytesIO(), stderr=io.BytesIO()) == 40 + TECHNOLOGY[tee]


@pytest.mark.parametrize("tee", SIM_TEES)
def test_debug_keep(tee, workload):
    with running_keep(tee, **DEBUG_OPTIONS[tee]) as server:
        error = refused(server.address, workload)
        assert "debug" in str(error)
        assert settled(server).workload_bytes == 0


def test_none_keep_without_allow(workload):
    with running_keep("none") as server:
        error = refused(server.address, workload)
        assert "outside any TEE" in str(error)
        assert settled(server).workload_bytes == 0


def test_a_simulated_keep_is_refused_for_being_simulated(workload):
    """Without --trust-simulated, a simulated Intel keep gets the simulators' collateral
    (never fetched) and is refused for what it is, not for missing collateral."""
    with running_keep("tdx-sim") as server:
        error = refused(server.address, workload, trust_simulated=False)
        assert "ends at a SIMULATED root: the evidence is simulated; pass " \
            "--trust-simulated" in str(error)
        assert "collateral" not in str(error)

        def broken(technology, evidence):
            raise OSError("PCCS unreachable")

        error = refused(server.address, workload, collateral_for=broken)
        assert "PCCS unreachable" in str(error)
        assert settled(server).workload_bytes == 0


# ------------------------------------------------------------------ man in the middle


def test_man_in_the_middle_with_a_plain_certificate(workload):
    with running_keep("sgx-sim") as genuine:
        key = generate_key("p256")
        plain = KeepIdentity(key, build_certificate(key, None, b""), 0, b"")
        with relay(plain, genuine.address) as proxy:
            error = refused(proxy.address, workload)
            assert "no attestation evidence" in str(error)
        assert proxy.handshakes == 1 and proxy.from_tenant == 0
        assert settled(genuine).workload_bytes == 0


@pytest.mark.parametrize("tee", SIM_TEES)
def test_man_in_the_middle_with_the_keeps_evidence(tee, workload):
    with running_keep(tee) as genuine:
        with relay(impostor_identity(genuine.identity), genuine.address) as proxy:
            error = refused(proxy.address, workload)
            assert "not bound to this certificate's key" in str(error)
        assert proxy.handshakes == 1 and proxy.from_tenant == 0
        assert settled(genuine).workload_bytes == 0


def test_transparent_relay_is_harmless(workload):
    """Control for the relay: a proxy presenting the keep's own identity (so holding its
    key: no attacker can) passes, which shows the refusals above come from the checks."""
    with running_keep("sgx-sim") as genuine:
        with relay(genuine.identity, genuine.address) as proxy:
            status = deploy(proxy.address, workload, [], trust_simulated=True,
                            stdout=io.BytesIO(), stderr=io.BytesIO())
        assert status == 42
        assert genuine.stats.workload_bytes > 0
