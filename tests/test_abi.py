"""The pure core against every row of the contract table (docs/design.md section 1)."""

import errno

import pytest

from attestcall.abi import (
    SSIZE_MAX_NATIVE,
    SSIZE_MAX_WASM32,
    BufferMemory,
    Outcome,
    Technology,
    get_attestation,
)
from tests.fakes.source import FixedSource, expected_evidence

BASE = 0x10000
SIZE = 300
NONCE = bytes(range(64))


def layout():
    """Memory: guard | nonce (64) | guard | buffer (SIZE + 16) | guard."""
    mem = BufferMemory(bytearray(b"\xcc" * 1024), base=BASE)
    nonce_at = BASE + 16
    mem.write(nonce_at, NONCE)
    buf_at = BASE + 128
    return mem, nonce_at, buf_at


def call(mem, nonce_at, buf_at, buf_len=SIZE, nonce_len=64, source=None, **kw):
    source = source or FixedSource(size=SIZE)
    return get_attestation(nonce_at, nonce_len, buf_at, buf_len, memory=mem, source=source, **kw)


def test_size_query_equals_bytes_written_and_ignores_other_arguments():
    mem, nonce_at, buf_at = layout()
    before = bytes(mem.data)
    q = get_attestation(0xDEAD, 7, 0, 0, memory=mem, source=FixedSource(size=SIZE))
    assert q == Outcome(SIZE, Technology.SGX)
    assert bytes(mem.data) == before  # nothing written
    r = call(mem, nonce_at, buf_at, buf_len=SIZE + 16)
    assert r == Outcome(q.ret, Technology.SGX)
    assert mem.read(buf_at, SIZE) == expected_evidence(NONCE, SIZE)
    assert mem.read(buf_at + SIZE, 16) == b"\xcc" * 16  # nothing past the evidence


@pytest.mark.parametrize("buf_len", [0, SSIZE_MAX_NATIVE + 1, 2**64 - 1])
def test_bad_buffer_length_is_einval(buf_len):
    mem, nonce_at, buf_at = layout()
    assert call(mem, nonce_at, buf_at, buf_len=buf_len) == Outcome(-errno.EINVAL, None)


def test_wasm_ssize_max_is_2_31_minus_1():
    mem, nonce_at, buf_at = layout()
    r = call(mem, nonce_at, buf_at, buf_len=SSIZE_MAX_WASM32 + 1, ssize_max=SSIZE_MAX_WASM32)
    assert r.ret == -errno.EINVAL
    r = call(mem, nonce_at, buf_at, buf_len=SSIZE_MAX_WASM32, ssize_max=SSIZE_MAX_WASM32)
    assert r.ret == SIZE


@pytest.mark.parametrize("nonce_len", [0, 63, 65, 128])
def test_nonce_length_other_than_64_is_einval(nonce_len):
    mem, nonce_at, buf_at = layout()
    assert call(mem, nonce_at, buf_at, nonce_len=nonce_len) == Outcome(-errno.EINVAL, None)


def test_buffer_length_checked_before_nonce_length():
    mem, nonce_at, buf_at = layout()
    assert call(mem, nonce_at, buf_at, buf_len=0, nonce_len=3).ret == -errno.EINVAL


@pytest.mark.parametrize("nonce_at", [0, BASE - 64, BASE + 1024 - 63, BASE + 4096])
def test_unreadable_nonce_is_efault(nonce_at):
    mem, _, buf_at = layout()
    assert call(mem, nonce_at, buf_at) == Outcome(-errno.EFAULT, None)


def test_nonce_checked_before_buffer_size():
    mem, _, buf_at = layout()
    assert call(mem, 0, buf_at, buf_len=1).ret == -errno.EFAULT


def test_short_buffer_is_emsgsize_and_writes_nothing():
    mem, nonce_at, buf_at = layout()
    before = bytes(mem.data)
    source = FixedSource(size=SIZE)
    assert call(mem, nonce_at, buf_at, buf_len=SIZE - 1, source=source).ret == -errno.EMSGSIZE
    assert bytes(mem.data) == before
    assert source.calls == []  # no evidence was even asked for


def test_platform_failure_is_eio():
    mem, nonce_at, buf_at = layout()
    before = bytes(mem.data)
    assert call(mem, nonce_at, buf_at, source=FixedSource(size=SIZE, fail=True)).ret == -errno.EIO
    assert bytes(mem.data) == before


def test_evidence_of_another_size_than_announced_is_eio():
    class Liar(FixedSource):
        def evidence(self, nonce):
            return super().evidence(nonce) + b"x"

    mem, nonce_at, buf_at = layout()
    before = bytes(mem.data)
    assert call(mem, nonce_at, buf_at, buf_len=SIZE + 16, source=Liar(size=SIZE)).ret == -errno.EIO
    assert bytes(mem.data) == before


@pytest.mark.parametrize("where", ["unmapped", "straddling", "readonly"])
def test_unwritable_buffer_is_efault(where):
    mem, nonce_at, _ = layout()
    if where == "unmapped":
        buf_at = BASE + 8192
    elif where == "straddling":
        buf_at = BASE + 1024 - SIZE + 1
    else:
        buf_at = BASE + 400
        mem.readonly = (BASE + 400, BASE + 400 + SIZE)
    r = call(mem, nonce_at, buf_at)
    assert r == Outcome(-errno.EFAULT, None)


def test_none_platform_answers_technology_zero_size_zero():
    from attestcall.keep.shim import NoneSource

    mem, nonce_at, buf_at = layout()
    before = bytes(mem.data)
    assert get_attestation(0, 0, 0, 0, memory=mem, source=NoneSource()) == Outcome(0, 0)
    assert call(mem, nonce_at, buf_at, source=NoneSource()) == Outcome(0, 0)
    assert bytes(mem.data) == before
