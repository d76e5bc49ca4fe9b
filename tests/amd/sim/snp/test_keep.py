"""snp-sim through the keep: evidence that verifies, options, hostile hosts, concurrency."""

from __future__ import annotations

import errno
import threading

import pytest

import attestcall
from attestcall.abi import BufferMemory, Outcome, get_attestation
from attestcall.amd.formats import certs as amdcerts
from attestcall.amd.formats import report as snp
from attestcall.amd.sim import snp as snp_sim
from attestcall.amd.sim.snp.keep import CERTS_LIMIT, SEQNO_LIMIT, Op, SnpHost
from attestcall.errors import UsageError
from attestcall.keep.platforms import open_keep
from tests.fakes.hostile_snp_host import HOSTILE, hostile_snp_keep

NONCE = bytes(range(100, 164))
BASE = 0x40000


def attempt(source, nonce: bytes = NONCE, slack: int = 512):
    """Size query, then a call into a buffer with guard bytes on both sides."""
    size_q = get_attestation(0, 0, 0, 0, memory=BufferMemory(bytearray(1)), source=source)
    size = size_q.ret if size_q.ok else 8192
    memory = BufferMemory(bytearray(b"\x5a" * (64 + 2 * slack + size)), base=BASE)
    memory.write(BASE, nonce)
    buf = BASE + 64 + slack
    before = bytes(memory.data)
    outcome = get_attestation(BASE, 64, buf, size, memory=memory, source=source)
    evidence = memory.read(buf, outcome.ret) if outcome.ok else b""
    return size_q, outcome, before, memory, evidence


def evidence_of(keep, nonce: bytes = NONCE) -> bytes:
    size_q, outcome, _, _, evidence = attempt(keep.source, nonce)
    assert size_q == Outcome(outcome.ret, 3) and outcome.technology == 3
    return evidence


def test_evidence_is_a_report_and_its_certificate_table() -> None:
    with open_keep("snp-sim", b"honest") as keep:
        evidence = evidence_of(keep)
    report = snp.parse(evidence[:snp.REPORT_SIZE])
    assert report.report_data == NONCE and report.version == 3
    entries = amdcerts.parse_table(evidence[snp.REPORT_SIZE:])
    assert [e.name for e in entries] == ["VCEK", "ASK", "ARK"]


def test_evidence_verifies_only_when_simulated_roots_are_trusted() -> None:
    with open_keep("snp-sim", b"honest") as keep:
        evidence = evidence_of(keep)
    verdict = attestcall.verify(evidence, trust_simulated=True, nonce=NONCE)
    assert verdict.accepted, verdict.reasons
    assert verdict.technology == "snp" and verdict.simulated
    assert verdict.claims["report_data"] == NONCE.hex()
    assert verdict.claims["measurement"] == snp_sim.measure_payload(b"honest").hex()
    refused = attestcall.verify(evidence)
    assert not refused.accepted
    assert any("simulated" in reason for reason in refused.reasons)


def test_two_payloads_have_two_measurements() -> None:
    claims = []
    for payload in (b"payload one", b"payload two"):
        with open_keep("snp-sim", payload) as keep:
            verdict = attestcall.verify(evidence_of(keep), trust_simulated=True)
        assert verdict.accepted, verdict.reasons
        claims.append(verdict.claims["measurement"])
    assert claims[0] != claims[1]


@pytest.mark.parametrize("product", ["milan", "genoa", "turin"])
@pytest.mark.parametrize("vlek", [False, True])
def test_every_product_and_signing_key_verifies(product: str, vlek: bool) -> None:
    with open_keep("snp-sim", b"p", product=product, vlek=vlek) as keep:
        evidence = evidence_of(keep)
        assert keep.details["product"].lower() == product
    verdict = attestcall.verify(evidence, trust_simulated=True, nonce=NONCE)
    assert verdict.accepted, verdict.reasons
    assert verdict.claims["product"].lower() == product
    assert verdict.claims["signer_info"]["signing_key"] == int(vlek)


def test_options_reach_the_report() -> None:
    options = {"report_version": 5, "host_data": "ab" * 32, "family_id": b"F" * 16,
               "image_id": b"I" * 16, "debug": True, "timeout": 5}
    with open_keep("snp-sim", b"p", **options) as keep:
        evidence = evidence_of(keep)
    report = snp.parse(evidence[:snp.REPORT_SIZE])
    assert report.version == 5 and report.debug
    assert report.host_data == b"\xab" * 32
    assert (report.family_id, report.image_id) == (b"F" * 16, b"I" * 16)
    refused = attestcall.verify(evidence, trust_simulated=True)
    assert not refused.accepted and any("debug" in r for r in refused.reasons)
    verdict = attestcall.verify(evidence, trust_simulated=True,
                                policy={"snp": {"allow_debug": True}})
    assert verdict.accepted, verdict.reasons


@pytest.mark.parametrize("options", [
    {"product": "rome"}, {"report_version": 4}, {"host_data": b"short"},
    {"image_id": "zz" * 16}, {"family_id": bytes(17)}, {"frobnicate": 1},
])
def test_bad_options_are_usage_errors(options) -> None:
    with pytest.raises(UsageError):
        open_keep("snp-sim", b"p", **options)


def test_unset_options_are_ignored() -> None:
    with open_keep("snp-sim", b"p", product=None, identity={"mrenclave": None},
                   timeout=None) as keep:
        assert keep.source.technology == 3


# ------------------------------------------------------------------------ hostile hosts


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_host_gives_eio_then_vmpck_stays_disabled(name: str) -> None:
    kind = HOSTILE[name]
    keep = hostile_snp_keep(kind)
    try:
        for _ in range(kind.strike - 1):  # honest exchanges before the strike
            assert attempt(keep.source)[1].ok
        size_q, outcome, before, memory, _ = attempt(keep.source)
        assert size_q.ok  # the size query sends no guest message
        assert outcome == Outcome(-errno.EIO, None)
        assert bytes(memory.data) == before, "memory around the buffer changed"
        assert keep.source.secrets.disabled
        assert not any(keep.source.secrets.vmpck0)
        for _ in range(2):  # the host behaves again: nothing more from this keep
            size_q, outcome, before, memory, _ = attempt(keep.source)
            assert size_q == Outcome(-errno.EIO, None)
            assert outcome == Outcome(-errno.EIO, None)
            assert bytes(memory.data) == before
    finally:
        keep.close()


def test_a_dropped_message_is_bounded_by_the_timeout() -> None:
    import time

    keep = hostile_snp_keep(HOSTILE["dropped"], timeout=0.3)
    try:
        start = time.monotonic()
        assert attempt(keep.source)[1] == Outcome(-errno.EIO, None)
        assert time.monotonic() - start < 3
    finally:
        keep.close()


class NoTable(SnpHost):
    def handle(self, op, data, limit):
        if op == Op.SNP_CERTS:
            raise RuntimeError("no certificates today")
        return super().handle(op, data, limit)


class HugeTable(SnpHost):
    def handle(self, op, data, limit):
        if op == Op.SNP_CERTS:
            return bytes(CERTS_LIMIT + 1)
        return super().handle(op, data, limit)


@pytest.mark.parametrize("kind", [NoTable, HugeTable])
def test_a_host_without_a_usable_table_gives_eio_but_sends_no_message(kind) -> None:
    keep = hostile_snp_keep(kind)
    try:
        size_q, outcome, before, memory, _ = attempt(keep.source)
        assert size_q == Outcome(-errno.EIO, None) and outcome == Outcome(-errno.EIO, None)
        assert bytes(memory.data) == before
        assert not keep.source.secrets.disabled and keep.source.secrets.msg_seqno == 0
    finally:
        keep.close()


def test_an_exhausted_sequence_number_disables_vmpck() -> None:
    with open_keep("snp-sim", b"p") as keep:
        keep.source.secrets.msg_seqno = SEQNO_LIMIT - 1
        assert attempt(keep.source)[1] == Outcome(-errno.EIO, None)
        assert keep.source.secrets.disabled


# ------------------------------------------------------------------------ concurrency


def test_concurrent_callers_each_get_their_own_nonce() -> None:
    """The shim's lock keeps the PSP's sequence numbers consecutive under any interleaving
    (the PSP refuses anything else, which would disable VMPCK0)."""
    results: dict[int, bytes] = {}
    errors: list[BaseException] = []
    with open_keep("snp-sim", b"threads") as keep:
        barrier = threading.Barrier(8)

        def worker(index: int) -> None:
            try:
                barrier.wait()
                for round_ in range(3):
                    nonce = bytes([index * 16 + round_]) * 64
                    results[index * 16 + round_] = evidence_of(keep, nonce)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert keep.source.secrets.msg_seqno == 2 * 24
    assert not errors, errors
    assert len(results) == 24
    for key, evidence in results.items():
        verdict = attestcall.verify(evidence, trust_simulated=True, nonce=bytes([key]) * 64)
        assert verdict.accepted, verdict.reasons
