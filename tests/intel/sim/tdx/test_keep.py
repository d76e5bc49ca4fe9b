"""--tee tdx-sim: the keep's TDX shim and host, the contract through the native, Wasm and
Python front ends, and hostile hosts (docs/design.md sections 1, 2 and 4)."""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import hmac
import json
import shutil
import subprocess
import sys
import time

import pytest

from attestcall import verify
from attestcall.abi import BufferMemory, Outcome, get_attestation
from attestcall.errors import UsageError
from attestcall.frontends.native import run_native
from attestcall.frontends.wasm import WasmKeep
from attestcall.include_dir import include_dir
from attestcall.intel.formats.tdx_quote import DcapQuote, TdReportBody, quote_length
from attestcall.intel.sim import tdx as tdx_sim
from attestcall.intel.sim.tdx.collateral import collateral
from attestcall.intel.sim.tdx.keep import Op, TdxHost, TdxShim
from attestcall.keep.block import HEADER
from attestcall.keep.host import Host
from attestcall.keep.keep import Keep, start_host
from attestcall.keep.platforms import open_keep, tee_names
from tests import paths

TESTS = paths.TESTS
NONCE = bytes(range(100, 164))
BASE = 0x40000
GUARD = 0x5A


def seeded(seed: int, step: int = 1) -> bytes:
    return bytes((seed + step * i) & 0xFF for i in range(64))


def body_of(quote: bytes) -> TdReportBody:
    """The TD report body of the quote at the start of ``quote`` (a read of the buffer may
    run past the quote into the caller's unwritten sentinel bytes)."""
    body = DcapQuote.parse(quote[:quote_length(quote)]).body
    assert isinstance(body, TdReportBody)
    return body


def attempt(source, nonce: bytes = NONCE, slack: int = 512):
    """Size query, then one call into a buffer with guard bytes on both sides."""
    size_q = get_attestation(0, 0, 0, 0, memory=BufferMemory(bytearray(1)), source=source)
    size = size_q.ret if size_q.ok else 8192
    memory = BufferMemory(bytearray(bytes([GUARD]) * (64 + 2 * slack + size)), base=BASE)
    memory.write(BASE, nonce)
    buf = BASE + 64 + slack
    before = bytes(memory.data)
    outcome = get_attestation(BASE, 64, buf, size, memory=memory, source=source)
    return size_q, outcome, before, memory, buf


@pytest.fixture(scope="module")
def keep(tmp_path_factory: pytest.TempPathFactory):
    """One honest keep for the module, on the session's private simulated home (set here:
    the autouse fixture that sets it is function-scoped)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ATTESTCALL_HOME", str(tmp_path_factory.getbasetemp() / "attestcall-home"))
        keep = open_keep("tdx-sim", b"tdx keep payload")
    with keep:
        yield keep


# ------------------------------------------------------------------ the keep, in process


def test_registered() -> None:
    assert "tdx-sim" in tee_names()


@pytest.mark.parametrize("version", [4, 5])
def test_a_call_gives_a_quote_of_the_nonce(version: int) -> None:
    with open_keep("tdx-sim", b"tdx keep payload", quote_version=version) as keep:
        size_q, outcome, before, memory, buf = attempt(keep.source)
    assert size_q == Outcome(outcome.ret, 4) and outcome.technology == 4
    quote = memory.read(buf, outcome.ret)
    parsed = DcapQuote.parse(quote)
    assert parsed.header.version == version and parsed.body.is_td15 == (version == 5)
    body = body_of(quote)
    assert body.report_data == NONCE
    assert body.mr_td == tdx_sim.measure_payload(b"tdx keep payload")
    assert not body.debug
    # nothing but the buffer changed
    end = buf - BASE + outcome.ret
    assert memory.data[: buf - BASE] == before[: buf - BASE]
    assert memory.data[end:] == before[end:]


def test_two_payloads_have_two_mrtds(keep: Keep) -> None:
    with open_keep("tdx-sim", b"another payload") as other:
        a = body_of(attempt(keep.source)[3].read(BASE + 64 + 512, 4985))
        b = body_of(attempt(other.source)[3].read(BASE + 64 + 512, 4985))
    assert a.mr_td != b.mr_td


def test_options_reach_the_tdreport() -> None:
    options = {
        "rtmr0": b"\x10" * 48, "rtmr1": "11" * 48, "rtmr2": b"\x12" * 48, "rtmr3": b"\x13" * 48,
        "mrconfigid": b"\x20" * 48, "mrowner": b"\x21" * 48, "mrownerconfig": b"\x22" * 48,
        "xfam": 0x3, "td_attributes": 0x10000000, "debug": True, "timeout": 5.0,
    }  # fmt: skip
    with open_keep("tdx-sim", b"p", **options) as keep:
        _, outcome, _, memory, buf = attempt(keep.source)
    body = body_of(memory.read(buf, outcome.ret))
    assert (body.rtmr0, body.rtmr1, body.rtmr2, body.rtmr3) == tuple(
        bytes([b]) * 48 for b in (0x10, 0x11, 0x12, 0x13)
    )
    assert (body.mr_config_id, body.mr_owner, body.mr_owner_config) == (
        b"\x20" * 48, b"\x21" * 48, b"\x22" * 48,
    )  # fmt: skip
    assert body.xfam == (3).to_bytes(8, "little")
    assert body.debug and body.td_attribute_flags == 0x10000001


@pytest.mark.parametrize(
    "options",
    [{"quote_version": 3}, {"quote_version": True}, {"rtmr0": b"\x00" * 47},
     {"mrowner": "zz" * 48}, {"xfam": -1}, {"td_attributes": "many"}],
)  # fmt: skip
def test_bad_options_are_usage_errors(options: dict) -> None:
    with pytest.raises(UsageError):
        open_keep("tdx-sim", b"p", **options)


def test_the_quote_verifies_with_the_simulated_collateral(keep: Keep) -> None:
    _, outcome, _, memory, buf = attempt(keep.source)
    state = tdx_sim.load_state()
    issued = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    verdict = verify(memory.read(buf, outcome.ret), collateral=collateral(state, issued=issued),
                     nonce=NONCE, trust_simulated=True)  # fmt: skip
    assert verdict.accepted, verdict.reasons
    assert verdict.tcb_status == "UpToDate"


# ------------------------------------------------------------------------- hostile hosts


class ForgedReport(TdxHost):
    """Passes on its own TDREPORT (another nonce, MAC'd under a guessed key)."""

    def handle(self, op, data, limit):
        if op == Op.TDX_QUOTE:
            forged = bytearray(data)
            forged[128:192] = bytes(64)
            forged[224:256] = hmac.new(bytes(32), bytes(forged[:224]), hashlib.sha256).digest()
            data = bytes(forged)
        return super().handle(op, data, limit)


class AlteredReport(TdxHost):
    """Flips one bit of the TD's REPORTDATA before the quote service sees it."""

    def handle(self, op, data, limit):
        if op == Op.TDX_QUOTE:
            data = data[:130] + bytes([data[130] ^ 1]) + data[131:]
        return super().handle(op, data, limit)


class _Substitutes(TdxHost):
    """Returns a genuine quote, but of another TDREPORT made by this platform."""

    nonce = seeded(0xEE)
    payload = b"tdx hostile"

    def __init__(self, quote_service):
        super().__init__(quote_service)
        module = tdx_sim.SimulatedTdxModule(quote_service.state)
        self.report = module.report(self.nonce, tdx_sim.TdIdentity.for_payload(self.payload))

    def handle(self, op, data, limit):
        if op == Op.TDX_QUOTE:
            data = self.report
        return super().handle(op, data, limit)


class OtherNonce(_Substitutes):
    """Another nonce's quote (a replay)."""


class OtherTd(_Substitutes):
    """The same nonce, but another TD's quote."""

    nonce = NONCE
    payload = b"another TD"


class OtherVersion(TdxHost):
    """A v5 quote (and its size) where the shim expects v4."""

    def __init__(self, quote_service):
        super().__init__(tdx_sim.TdQuotingEnclave(quote_service.state, 5))


class Oversized(TdxHost):
    def handle(self, op, data, limit):
        reply = super().handle(op, data, limit)
        return reply + bytes(64) if op == Op.TDX_QUOTE else reply


class Short(TdxHost):
    def handle(self, op, data, limit):
        reply = super().handle(op, data, limit)
        return reply[:-1] if op == Op.TDX_QUOTE else reply


class HugeSize(TdxHost):
    def handle(self, op, data, limit):
        if op == Op.TDX_QUOTE_SIZE:
            return (2**32 - 1).to_bytes(4, "little")
        return super().handle(op, data, limit)


class TinySize(TdxHost):
    """Announces (and sends) 100 bytes: too small for any TDX quote."""

    def handle(self, op, data, limit):
        if op == Op.TDX_QUOTE_SIZE:
            return (100).to_bytes(4, "little")
        return super().handle(op, data, limit)[:100]


class SizeReplyTooLong(TdxHost):
    def handle(self, op, data, limit):
        reply = super().handle(op, data, limit)
        return reply + b"\0" if op == Op.TDX_QUOTE_SIZE else reply


class OtherSequence(TdxHost, Host):
    """Replies correctly, labelled with another request's sequence number."""

    def process(self, block):
        super().process(block)
        fields = list(HEADER.unpack_from(block.buffer, 0))
        if fields[2] == (Op.TDX_QUOTE | 0x8000):
            fields[3] += 1
            HEADER.pack_into(block.buffer, 0, *fields)


class Raises(TdxHost):
    def handle(self, op, data, limit):
        if op == Op.TDX_QUOTE:
            raise RuntimeError("the host fell over")
        return super().handle(op, data, limit)


class Hangs(TdxHost):
    def handle(self, op, data, limit):
        if op == Op.TDX_QUOTE:
            time.sleep(60)
        return super().handle(op, data, limit)


HOSTILE = {
    "forged TDREPORT": ForgedReport, "altered TDREPORT": AlteredReport,
    "another nonce's quote": OtherNonce, "another TD's quote": OtherTd,
    "another quote version": OtherVersion, "oversized quote": Oversized,
    "short quote": Short, "impossible size": HugeSize, "tiny size": TinySize,
    "long size reply": SizeReplyTooLong, "reply for another request": OtherSequence,
    "exception": Raises, "hang": Hangs,
}  # fmt: skip


def hostile_keep(kind: type[TdxHost], payload: bytes = b"tdx hostile", version: int = 4,
                 timeout: float = 0.3) -> Keep:  # fmt: skip
    """A keep like ``open_keep("tdx-sim")`` with a hostile host behind the shim."""
    state = tdx_sim.load_state()
    channel, process = start_host(kind(tdx_sim.TdQuotingEnclave(state, version)), timeout)
    identity = tdx_sim.TdIdentity.for_payload(payload)
    shim = TdxShim(tdx_sim.SimulatedTdxModule(state), identity, channel, version)
    return Keep("tdx-sim", shim, process)


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_host_gives_eio_and_leaves_memory_alone(name: str) -> None:
    with hostile_keep(HOSTILE[name]) as keep:
        size_q, outcome, before, memory, _ = attempt(keep.source)
    eio = Outcome(-errno.EIO, None)
    assert outcome == eio or size_q == eio
    assert bytes(memory.data) == before


def test_an_honest_hostile_keep_works() -> None:
    """The harness itself: the plain host through hostile_keep gives a good quote."""
    with hostile_keep(TdxHost) as keep:
        _, outcome, _, memory, buf = attempt(keep.source)
    assert body_of(memory.read(buf, outcome.ret)).report_data == NONCE


# ------------------------------------------------------------------------ native front end


@pytest.fixture(scope="module")
def executables(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    if shutil.which("gcc") is None:
        pytest.fail("gcc is required to build the native test payloads")
    out = tmp_path_factory.mktemp("tdx-payloads")
    built = {}
    for name, source, flags in (
        ("contract", paths.NATIVE_C / "contract.c", []),
        ("tdx_payload", paths.C / "tdx_payload.c", [f"-I{include_dir()}"]),
    ):
        exe = out / name
        subprocess.run(["gcc", "-O2", "-Wall", "-Werror", "-pthread", *flags, "-o", str(exe),
                        str(source)], check=True)  # fmt: skip
        built[name] = str(exe)
    return built


def run_contract(executables, capfd, keep: Keep, case: str) -> dict[str, str]:
    status = run_native([executables["contract"], case], keep.source)
    out = capfd.readouterr().out
    assert status == 0, out
    return dict(item.partition("=")[::2] for item in out.split())


def test_native_size_query_and_success(executables, capfd, keep: Keep) -> None:
    size = run_contract(executables, capfd, keep, "size")
    assert int(size["rdx"], 16) == 4
    fields = run_contract(executables, capfd, keep, "success")
    assert int(fields["ret"]) == int(fields["size"]) == int(size["ret"])
    assert int(fields["rdx"], 16) == 4 and fields["guards"] == "ok"
    body = body_of(bytes.fromhex(fields["evidence"]))
    assert body.report_data == seeded(0x11, 7)  # contract.c's nonce
    assert body.mr_td == tdx_sim.measure_payload(b"tdx keep payload")


@pytest.mark.parametrize(
    ("case", "code"),
    [("short", errno.EMSGSIZE), ("nonce63", errno.EINVAL), ("buflen0", errno.EINVAL),
     ("nonce-unmapped", errno.EFAULT), ("buf-straddle", errno.EFAULT),
     ("buf-readonly", errno.EFAULT)],
)  # fmt: skip
def test_native_error_rows(executables, capfd, keep: Keep, case: str, code: int) -> None:
    fields = run_contract(executables, capfd, keep, case)
    assert int(fields["ret"]) == -code
    assert fields["rdx"] == fields["rdx_in"]
    assert fields.get("untouched", "ok") == "ok" and fields.get("guards", "ok") == "ok"


def test_native_larger_buffer_gets_only_the_quote(executables, capfd, keep: Keep) -> None:
    fields = run_contract(executables, capfd, keep, "larger-buffer")
    assert int(fields["ret"]) == int(fields["size"]) and fields["guards"] == "ok"


def test_native_platform_failure_is_eio(executables, capfd) -> None:
    with hostile_keep(AlteredReport) as keep:
        fields = run_contract(executables, capfd, keep, "success")
    assert int(fields["ret"]) == -errno.EIO and fields["rdx"] == fields["rdx_in"]
    assert fields["untouched"] == "ok" and fields["guards"] == "ok"


def test_eight_threads_each_get_a_quote_of_their_own_nonce(executables, tmp_path) -> None:
    with open_keep("tdx-sim", b"threaded TD", quote_version=5) as keep:
        status = run_native([executables["tdx_payload"], "threads", str(tmp_path)], keep.source)
    assert status == 0
    state = tdx_sim.load_state()
    fields = collateral(state, issued=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1))
    for seed in range(1, 9):
        quote = (tmp_path / f"t{seed}.bin").read_bytes()
        verdict = verify(quote, collateral=fields, nonce=seeded(seed), trust_simulated=True)
        assert verdict.accepted, (seed, verdict.reasons)
        assert body_of(quote).mr_td == tdx_sim.measure_payload(b"threaded TD")


# ----------------------------------------------------------------- Python front end (guest)

GUEST = r"""
import ctypes, json
from attestcall import guest
technology, evidence = guest.get_attestation(bytes(range(100, 164)))
nonce = ctypes.create_string_buffer(bytes(range(64)), 64)
buf = ctypes.create_string_buffer(8192)
n, b = ctypes.addressof(nonce), ctypes.addressof(buf)
size = guest.raw_get_attestation(0, 0, 0, 0)
print(json.dumps({
    "technology": technology, "evidence": evidence.hex(), "size": size, "buf": b,
    "short": guest.raw_get_attestation(n, 64, b, size[0] - 1),
    "nonce63": guest.raw_get_attestation(n, 63, b, 8192),
    "nonce_null": guest.raw_get_attestation(0, 64, b, 8192),
    "untouched": ctypes.string_at(b, 8192) == bytes(8192),
}))
"""


def test_python_guest_in_a_tdx_keep(capfd, keep: Keep) -> None:
    status = run_native([sys.executable, "-c", GUEST], keep.source)
    out = capfd.readouterr().out
    assert status == 0, out
    result = json.loads(out)
    assert result["technology"] == 4
    evidence = bytes.fromhex(result["evidence"])
    assert result["size"] == [len(evidence), 4]
    assert body_of(evidence).report_data == NONCE
    assert result["short"] == [-errno.EMSGSIZE, result["buf"]]
    assert result["nonce63"] == [-errno.EINVAL, result["buf"]]
    assert result["nonce_null"] == [-errno.EFAULT, result["buf"]]
    assert result["untouched"]


# ---------------------------------------------------------------------- Wasm front end

WAT = paths.WASM_PAYLOADS


def test_wasm_contract_rows(keep: Keep) -> None:
    wasm = WasmKeep(WAT / "contract.wat", keep.source, env={})
    memory = wasm.memory
    assert memory is not None
    nonce_at, buf_at, tech_at, page = 0x1000, 0x3000, 0x100, 0x10000
    memory.write(wasm.store, NONCE, nonce_at)
    memory.write(wasm.store, bytes([GUARD]) * (page - buf_at), buf_at)
    size = wasm.call("call", nonce_at, 64, 0, 0, tech_at)
    assert memory.read(wasm.store, tech_at, tech_at + 4) == (4).to_bytes(4, "little")
    before = bytes(memory.read(wasm.store))
    assert wasm.call("call", nonce_at, 64, buf_at, size - 1, tech_at) == -errno.EMSGSIZE
    assert wasm.call("call", nonce_at, 63, buf_at, size, tech_at) == -errno.EINVAL
    assert wasm.call("call", page - 1, 64, buf_at, size, tech_at) == -errno.EFAULT
    assert wasm.call("call", nonce_at, 64, page - size + 1, size, tech_at) == -errno.EFAULT
    assert bytes(memory.read(wasm.store)) == before
    assert wasm.call("call", nonce_at, 64, buf_at, size + 100, tech_at) == size
    after = bytes(memory.read(wasm.store))
    assert body_of(after[buf_at : buf_at + size]).report_data == NONCE
    assert after[buf_at + size :] == before[buf_at + size :]
    assert after[:tech_at] == before[:tech_at]


def test_wasm_payload_runs_in_a_tdx_keep(capfdbinary, keep: Keep) -> None:
    status = WasmKeep(WAT / "attest.wat", keep.source, env={}).run()
    assert status == 4  # attest.wat exits with the technology
    quote = capfdbinary.readouterr().out  # attest.wat writes the evidence to stdout
    assert body_of(quote).report_data == b"0123456789abcdef" * 4


def test_wasm_hostile_host_is_eio_and_memory_unchanged() -> None:
    with hostile_keep(OtherNonce) as keep:
        wasm = WasmKeep(WAT / "contract.wat", keep.source, env={})
        memory = wasm.memory
        assert memory is not None
        memory.write(wasm.store, NONCE, 0x1000)
        size = wasm.call("call", 0x1000, 64, 0, 0, 0x100)
        before = bytes(memory.read(wasm.store))
        assert wasm.call("call", 0x1000, 64, 0x3000, size, 0x100) == -errno.EIO
        assert bytes(memory.read(wasm.store)) == before
