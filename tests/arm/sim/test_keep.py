"""The cca-sim keep: the realm's shim, the simulated RMM behind the request block (the RSI
attestation calls), the token it returns, and an RMM that misbehaves in every way the shim
checks (docs/design.md sections 1 and 2)."""

from __future__ import annotations

import errno
import hashlib
import struct
import threading

import pytest

from attestcall.abi import BufferMemory, get_attestation
from attestcall.arm.formats import cose
from attestcall.arm.formats import token as fmt
from attestcall.arm.sim import rmm as rsi
from attestcall.arm.sim import state as cca_state
from attestcall.arm.sim import token as tok
from attestcall.arm.sim.keep import CcaShim, Op, RmmHost, open_cca_sim
from attestcall.errors import UsageError
from attestcall.keep.keep import KeepServices, start_host

NONCE = bytes(range(100, 164))
PAYLOAD = b"cca keep payload"
BASE = 0x40000
GUARD = 0x5A


def attempt(source, nonce: bytes = NONCE, slack: int = 256):
    """Size query, then one call into a buffer with guard bytes on both sides."""
    size_q = get_attestation(0, 0, 0, 0, memory=BufferMemory(bytearray(1)), source=source)
    size = size_q.ret if size_q.ok else 4096
    memory = BufferMemory(bytearray(bytes([GUARD]) * (64 + 2 * slack + size)), base=BASE)
    memory.write(BASE, nonce)
    buf = BASE + 64 + slack
    outcome = get_attestation(BASE, 64, buf, size, memory=memory, source=source)
    written = memory.read(buf, max(outcome.ret, 0))
    guards = memory.read(buf - slack, slack) + memory.read(buf + max(outcome.ret, 0), slack)
    assert set(guards) == {GUARD}, "nothing is written outside the evidence"
    return size_q, outcome, written


def opened(options: dict | None = None, payload: bytes = PAYLOAD):
    services = KeepServices(timeout=5)
    keep = open_cca_sim(payload, options or {}, services)
    return keep, services


@pytest.mark.parametrize("form", [907, 399])
def test_token_through_the_core(form):
    keep, services = opened({"token_format": form})
    try:
        size_q, outcome, token = attempt(keep.source)
    finally:
        services.stop()
    assert size_q.ok and size_q.technology == outcome.technology == 5
    assert outcome.ret == size_q.ret == len(token)
    decoded = fmt.decode(token)
    assert decoded.form == form
    realm, platform = decoded.realm_claims, decoded.platform_claims
    assert realm.challenge == NONCE
    assert realm.initial_measurement == hashlib.sha256(PAYLOAD).digest()
    assert realm.extensible_measurements == (bytes(32),) * 4
    assert realm.personalization_value == bytes(64) and realm.hash_algo == "sha-256"
    loaded = cca_state.load_state()
    assert realm.rak == loaded.rak.public_key()
    assert decoded.realm.verify(loaded.rak.public_key()) is None
    assert decoded.platform.verify(loaded.cpak.public_key()) is None
    assert decoded.realm.algorithm.name == decoded.platform.algorithm.name == "ES384"
    assert platform.challenge == hashlib.sha256(realm.public_key).digest()
    assert platform.instance_id == loaded.instance_id
    assert platform.implementation_id == loaded.implementation_id
    assert platform.lifecycle_state == "secured"
    if form == 907:
        assert platform.profile == "tag:arm.com,2023:cca_platform#1.0.0"
        assert realm.profile == "tag:arm.com,2023:realm#1.0.0"
        assert cose.decode_cose_key(realm.public_key) == loaded.rak.public_key()
    else:
        assert platform.profile == "http://arm.com/CCA-SSD/1.0.0" and realm.profile is None
        assert len(realm.public_key) == 97 and realm.public_key[0] == 4


def test_options_reach_the_realm_token():
    rems = [bytes([i + 1]) * 64 for i in range(4)]
    pv = bytes(range(64))
    options = {"hash_algo": "sha-512", "personalization_value": pv.hex(),
               **{f"rem{i}": rem for i, rem in enumerate(rems)}, "debug": True}
    keep, services = opened(options)
    try:
        _, outcome, token = attempt(keep.source)
    finally:
        services.stop()
    assert outcome.ok
    realm = fmt.decode(token).realm_claims
    assert realm.hash_algo == "sha-512" and realm.initial_measurement == \
        hashlib.sha512(PAYLOAD).digest()
    assert list(realm.extensible_measurements) == rems and realm.personalization_value == pv
    assert fmt.decode(token).platform_claims.lifecycle_state == "recoverable-cca-platform-debug"
    assert keep.details["rim"] == hashlib.sha512(PAYLOAD).hexdigest()


def test_every_token_has_the_announced_size_and_its_own_challenge():
    keep, services = opened()
    try:
        size = keep.source.evidence_size()
        tokens = [keep.source.evidence(bytes([i]) * 64) for i in range(3)]
    finally:
        services.stop()
    assert {len(t) for t in tokens} == {size}
    assert [fmt.decode(t).realm_claims.challenge for t in tokens] == \
        [bytes([i]) * 64 for i in range(3)]


@pytest.mark.parametrize(("options", "message"), [
    ({"token_format": 908}, "907 or 399"),
    ({"hash_algo": "sha-384"}, "sha-256, sha-512"),
    ({"rem0": bytes(64)}, "REMs are 32 bytes"),
    ({"hash_algo": "sha-512", "rem3": bytes(32)}, "REMs are 64 bytes"),
    ({"rem1": "zz"}, "not hexadecimal"),
    ({"personalization_value": bytes(32)}, "64 bytes"),
    ({"mrenclave": bytes(32)}, "does not apply to cca-sim"),
])
def test_bad_options_are_usage_errors(options, message):
    services = KeepServices()
    try:
        with pytest.raises(UsageError, match=message):
            open_cca_sim(b"", options, services)
    finally:
        services.stop()
    assert services.process is None, "no RMM process is left behind"


# ------------------------------------------------------------------------- the RSI calls


def machine(**kwargs) -> rsi.SimulatedRmm:
    identity = tok.RealmIdentity.for_payload(PAYLOAD)
    return rsi.SimulatedRmm(cca_state.load_state(), identity, 907, **kwargs)


def test_rmm_continue_before_init_and_outside_the_granule():
    rmm = machine()
    assert rmm.token_continue(0, 4096) == (rsi.RSI_ERROR_STATE, b"")
    assert rmm.token_init(bytes(63))[0] == rsi.RSI_ERROR_INPUT
    status, bound = rmm.token_init(NONCE)
    assert status == rsi.RSI_SUCCESS and bound == rsi.TOKEN_BUFFER_SIZE
    assert rmm.token_continue(4000, 200)[0] == rsi.RSI_ERROR_INPUT
    assert rmm.token_continue(0, 0)[0] == rsi.RSI_ERROR_INPUT
    assert rmm.token_continue(0, 4096) == (rsi.RSI_INCOMPLETE, b"")  # signing
    status, piece = rmm.token_continue(0, 100)
    assert status == rsi.RSI_INCOMPLETE and len(piece) == 100
    status, rest = rmm.token_continue(100, 3996)
    assert status == rsi.RSI_SUCCESS
    assert fmt.decode(piece + rest).realm_claims.challenge == NONCE
    assert rmm.token_continue(0, 4096)[0] == rsi.RSI_ERROR_STATE, "a token is handed out once"


def test_a_token_over_several_granules():
    """With 256-byte granules the ~2 KiB token takes eight, each filled piece by piece."""
    channel, process = start_host(RmmHost(machine(granule=256)), 5)
    try:
        shim = CcaShim(channel, granule=256)
        size_q, outcome, token = attempt(shim)
    finally:
        process.stop()
    assert outcome.ok and outcome.ret == size_q.ret > 256 * 5
    assert fmt.decode(token).realm_claims.challenge == NONCE


# ------------------------------------------------------------------ a misbehaving RMM


class HostileRmm(RmmHost):
    """The RMM (in the keep's second process) answering wrongly in one way."""

    def __init__(self, how: str):
        super().__init__(machine())
        self.how = how
        self.calls = 0

    def handle(self, op: int, data: bytes, limit: int) -> bytes:
        self.calls += 1
        how = self.how
        if op == Op.RSI_TOKEN_INIT:
            if how == "init fails":
                return struct.pack("<QQ", rsi.RSI_ERROR_UNKNOWN, 0)
            if how == "init short":
                return b"\0" * 8
            if how == "init huge bound":
                return struct.pack("<QQ", rsi.RSI_SUCCESS, 1 << 40)
            if how == "init zero bound":
                return struct.pack("<QQ", rsi.RSI_SUCCESS, 0)
            if how == "another challenge":
                data = b"\xee" * 64
            if how == "init errno":
                from attestcall.errors import HostError

                raise HostError("refused", errno.EIO)
            reply = super().handle(op, data, limit)
            if how == "small bound":
                return struct.pack("<QQ", rsi.RSI_SUCCESS, 512)
            return reply
        reply = super().handle(op, data, limit)
        status, length = struct.unpack_from("<QQ", reply)
        if how == "length lies" and length:
            return struct.pack("<QQ", status, length + 1) + reply[16:]
        if how == "extra bytes" and length:
            return reply + b"\0"
        if how == "continue fails" and length:
            return struct.pack("<QQ", rsi.RSI_ERROR_INPUT, 0)
        if how == "never done":
            return struct.pack("<QQ", rsi.RSI_INCOMPLETE, 0)
        if how == "endless":  # full granules of junk, never SUCCESS
            offset, size = struct.unpack("<QQ", data)
            return struct.pack("<QQ", rsi.RSI_INCOMPLETE, size) + b"\xaa" * size
        return reply


@pytest.mark.parametrize("how", [
    "init fails", "init short", "init huge bound", "init zero bound", "init errno",
    "another challenge", "small bound", "length lies", "extra bytes", "continue fails",
    "never done", "endless",
])
def test_a_faulty_rmm_is_eio(how):
    channel, process = start_host(HostileRmm(how), 5)
    try:
        shim = CcaShim(channel)
        size_q = get_attestation(0, 0, 0, 0, memory=BufferMemory(bytearray(1)), source=shim)
        assert size_q.ret == -errno.EIO and size_q.technology is None
        memory = BufferMemory(bytearray(NONCE + bytes(8192)), base=BASE)
        outcome = get_attestation(BASE, 64, BASE + 64, 8192, memory=memory, source=shim)
        assert outcome.ret == -errno.EIO and outcome.technology is None
        assert memory.data[64:] == bytes(8192), "nothing written"
    finally:
        process.stop()


def test_a_token_of_another_size_than_announced_is_eio_then_the_size_is_asked_again():
    class Growing(RmmHost):
        def __init__(self):
            super().__init__(machine())
            self.grow = False

        def handle(self, op, data, limit):
            if op == Op.RSI_TOKEN_INIT and data == bytes(64):  # the size probe
                self.rmm.identity = tok.RealmIdentity.for_payload(PAYLOAD)
            elif op == Op.RSI_TOKEN_INIT:  # a real call: the realm is now sha-512
                self.rmm.identity = tok.RealmIdentity.for_payload(PAYLOAD, "sha-512")
            return super().handle(op, data, limit)

    channel, process = start_host(Growing(), 5)
    try:
        shim = CcaShim(channel)
        size_q, outcome, _ = attempt(shim)
        assert outcome.ret == -errno.EIO
        assert shim.evidence_size() != size_q.ret, "learned from the refused token"
    finally:
        process.stop()


def test_concurrent_callers_each_get_a_token_of_their_own_challenge():
    """INIT and its CONTINUEs are one exchange: eight threads at once never mix tokens."""
    keep, services = opened()
    results: dict[int, bytes] = {}
    try:
        size = keep.source.evidence_size()

        def worker(k: int) -> None:
            for _ in range(5):
                results[k] = keep.source.evidence(bytes([k]) * 64)

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    finally:
        services.stop()
    assert sorted(results) == list(range(8))
    for k, token in results.items():
        assert len(token) == size and fmt.realm_challenge(token) == bytes([k]) * 64
