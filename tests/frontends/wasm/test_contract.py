"""attestation.get_attestation through a real WAT module, row by row of the contract
(docs/design.md section 1, with the Wasm specifics of section 4)."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from attestcall.frontends.wasm import WasmKeep
from tests.fakes.source import FixedSource, expected_evidence

PAYLOADS = Path(__file__).parent / "payloads"
PAGE = 0x10000  # the module starts with one page of linear memory
NONCE_AT = 0x1000
BUF_AT = 0x2000
TECH_AT = 0x100
GUARD = 16
SIZE = 1000
TECHNOLOGY = 2
NONCE = bytes(range(0x40, 0x80))
SENTINEL = b"\xa5\xa5\xa5\xa5"


def i32(value: int) -> int:
    """An unsigned 32-bit value as the signed i32 wasmtime passes."""
    return value - (1 << 32) if value >= 1 << 31 else value


class Module:
    """contract.wat: its exported ``call`` forwards its five arguments to the import."""

    def __init__(self, source: FixedSource, payload: str = "contract.wat"):
        self.keep = WasmKeep(PAYLOADS / payload, source, env={})

    def call(self, nonce_ptr: int, nonce_len: int, buf_ptr: int, buf_len: int,
             tech_ptr: int = TECH_AT) -> int:
        args = (nonce_ptr, nonce_len, buf_ptr, buf_len, tech_ptr)
        return self.keep.call("call", *(i32(a) for a in args))

    def write(self, address: int, data: bytes) -> None:
        assert self.keep.memory is not None
        self.keep.memory.write(self.keep.store, data, address)

    def read(self, address: int, length: int) -> bytes:
        assert self.keep.memory is not None
        return bytes(self.keep.memory.read(self.keep.store, address, address + length))

    def snapshot(self) -> bytes:
        assert self.keep.memory is not None
        return bytes(self.keep.memory.read(self.keep.store))


@pytest.fixture
def source() -> FixedSource:
    return FixedSource(technology=TECHNOLOGY, size=SIZE)


@pytest.fixture
def module(source: FixedSource) -> Module:
    m = Module(source)
    m.write(NONCE_AT, NONCE)
    m.write(TECH_AT, SENTINEL)
    m.write(BUF_AT - GUARD, b"\xee" * (SIZE + 2 * GUARD))
    return m


def test_errno_values_are_linux_x86_64() -> None:
    assert (errno.EMSGSIZE, errno.EINVAL, errno.EFAULT, errno.EIO) == (90, 22, 14, 5)


# Row 1: size query


def test_size_query_answers_the_size_a_real_call_writes(module: Module) -> None:
    size = module.call(NONCE_AT, 64, 0, 0)
    assert size == SIZE
    assert module.read(TECH_AT, 4) == TECHNOLOGY.to_bytes(4, "little")
    module.write(TECH_AT, SENTINEL)
    assert module.call(NONCE_AT, 64, BUF_AT, size) == size
    assert module.read(TECH_AT, 4) == TECHNOLOGY.to_bytes(4, "little")


def test_size_query_examines_neither_length_nor_nonce_and_writes_nothing(
    module: Module, source: FixedSource
) -> None:
    before = module.snapshot()
    assert module.call(0xFFFFFFF0, 63, 0, 0x80000000) == SIZE
    after = module.snapshot()
    assert after[:TECH_AT] + after[TECH_AT + 4:] == before[:TECH_AT] + before[TECH_AT + 4:]
    assert source.calls == []


def test_technology_is_stored_little_endian() -> None:
    m = Module(FixedSource(technology=0x0A0B0C0D, size=SIZE))
    assert m.call(NONCE_AT, 64, 0, 0) == SIZE
    assert m.read(TECH_AT, 4) == b"\x0d\x0c\x0b\x0a"


def test_size_query_with_technology_out_of_bounds_is_efault(module: Module) -> None:
    before = module.snapshot()
    assert module.call(NONCE_AT, 64, 0, 0, PAGE - 3) == -errno.EFAULT
    assert module.call(NONCE_AT, 64, 0, 0, 0xFFFFFFFE) == -errno.EFAULT
    assert module.snapshot() == before


# Row 2: buffer length


@pytest.mark.parametrize("buf_len", [0, 0x80000000, 0xFFFFFFFF])
def test_bad_buffer_length_is_einval(module: Module, buf_len: int) -> None:
    assert module.call(NONCE_AT, 64, BUF_AT, buf_len) == -errno.EINVAL


def test_buffer_length_is_checked_before_the_nonce(module: Module) -> None:
    assert module.call(0xFFFFFFF0, 63, BUF_AT, 0) == -errno.EINVAL


# Row 3: nonce length


@pytest.mark.parametrize("nonce_len", [0, 63, 65, 0xFFFFFFFF])
def test_nonce_length_other_than_64_is_einval(module: Module, nonce_len: int) -> None:
    assert module.call(NONCE_AT, nonce_len, BUF_AT, SIZE) == -errno.EINVAL


def test_nonce_length_is_checked_before_the_nonce_pointer(module: Module) -> None:
    assert module.call(PAGE, 65, BUF_AT, SIZE) == -errno.EINVAL


# Row 4: nonce readable


@pytest.mark.parametrize(
    "nonce_ptr",
    [PAGE, PAGE - 63, PAGE - 1, 0x7FFFFFFF, 0xFFFFFFC0, 0xFFFFFFFF],
    ids=["at-end", "straddles-by-one", "straddles", "far", "wraps-to-zero", "max"],
)
def test_nonce_out_of_bounds_is_efault(module: Module, nonce_ptr: int) -> None:
    before = module.snapshot()
    assert module.call(nonce_ptr, 64, BUF_AT, SIZE) == -errno.EFAULT
    assert module.snapshot() == before


def test_nonce_ending_exactly_at_the_end_of_memory_is_readable(module: Module) -> None:
    module.write(PAGE - 64, NONCE)
    assert module.call(PAGE - 64, 64, BUF_AT, SIZE) == SIZE
    assert module.read(BUF_AT, SIZE) == expected_evidence(NONCE, SIZE)


def test_nonce_at_address_zero_is_readable(module: Module) -> None:
    module.write(0, NONCE)
    assert module.call(0, 64, BUF_AT, SIZE) == SIZE
    assert module.read(BUF_AT, SIZE) == expected_evidence(NONCE, SIZE)


# Row 5: buffer large enough


def test_buffer_one_byte_short_is_emsgsize(module: Module) -> None:
    before = module.snapshot()
    assert module.call(NONCE_AT, 64, BUF_AT, SIZE - 1) == -90 == -errno.EMSGSIZE
    assert module.snapshot() == before


def test_nonce_is_checked_before_the_buffer_size(module: Module) -> None:
    assert module.call(PAGE, 64, BUF_AT, SIZE - 1) == -errno.EFAULT


# Row 6: platform failure


def test_platform_failure_is_eio_and_writes_nothing() -> None:
    m = Module(FixedSource(technology=TECHNOLOGY, size=SIZE, fail=True))
    m.write(NONCE_AT, NONCE)
    m.write(TECH_AT, SENTINEL)
    before = m.snapshot()
    assert m.call(NONCE_AT, 64, BUF_AT, SIZE) == -errno.EIO
    assert m.snapshot() == before


# Row 7: buffer writable


@pytest.mark.parametrize(
    "buf_ptr",
    [PAGE, PAGE - SIZE + 1, PAGE - 1, 0x7FFFFFFF, 0xFFFFFFFF - SIZE + 2],
    ids=["at-end", "straddles-by-one", "straddles", "far", "wraps"],
)
def test_buffer_out_of_bounds_is_efault_and_memory_unchanged(
    module: Module, buf_ptr: int
) -> None:
    before = module.snapshot()
    assert module.call(NONCE_AT, 64, buf_ptr, SIZE) == -errno.EFAULT
    assert module.snapshot() == before


def test_buffer_ending_exactly_at_the_end_of_memory_is_writable(module: Module) -> None:
    assert module.call(NONCE_AT, 64, PAGE - SIZE, SIZE) == SIZE
    assert module.read(PAGE - SIZE, SIZE) == expected_evidence(NONCE, SIZE)


@pytest.mark.parametrize("tech_ptr", [PAGE - 3, PAGE, 0xFFFFFFFF])
def test_technology_out_of_bounds_is_efault_and_no_evidence_written(
    module: Module, tech_ptr: int
) -> None:
    before = module.snapshot()
    assert module.call(NONCE_AT, 64, BUF_AT, SIZE, tech_ptr) == -errno.EFAULT
    assert module.snapshot() == before


def test_memory_growth_is_seen_by_the_next_call(module: Module) -> None:
    beyond = PAGE + 0x100
    assert module.call(NONCE_AT, 64, beyond, SIZE) == -errno.EFAULT
    assert module.keep.call("grow", 1) == 1
    assert module.call(NONCE_AT, 64, beyond, SIZE) == SIZE
    assert module.read(beyond, SIZE) == expected_evidence(NONCE, SIZE)


# Row 8: success


def test_success_writes_exactly_the_evidence_and_nothing_around_it(
    module: Module, source: FixedSource
) -> None:
    before = module.snapshot()
    assert module.call(NONCE_AT, 64, BUF_AT, SIZE + GUARD) == SIZE
    after = module.snapshot()
    assert after[BUF_AT:BUF_AT + SIZE] == expected_evidence(NONCE, SIZE)
    assert after[TECH_AT:TECH_AT + 4] == TECHNOLOGY.to_bytes(4, "little")
    untouched = [(0, TECH_AT), (TECH_AT + 4, BUF_AT), (BUF_AT + SIZE, PAGE)]
    for start, end in untouched:
        assert after[start:end] == before[start:end], f"bytes {start:#x}..{end:#x} changed"
    assert source.calls == [NONCE]


def test_success_with_the_largest_wasm32_buffer_length(module: Module) -> None:
    assert module.call(NONCE_AT, 64, BUF_AT, 0x7FFFFFFF) == SIZE
    assert module.read(BUF_AT, SIZE) == expected_evidence(NONCE, SIZE)


# Every error leaves technology_ptr alone


ERRORS = {
    "einval-buf-len": ((NONCE_AT, 64, BUF_AT, 0), errno.EINVAL),
    "einval-nonce-len": ((NONCE_AT, 63, BUF_AT, SIZE), errno.EINVAL),
    "efault-nonce": ((PAGE - 1, 64, BUF_AT, SIZE), errno.EFAULT),
    "emsgsize": ((NONCE_AT, 64, BUF_AT, SIZE - 1), errno.EMSGSIZE),
    "efault-buf": ((NONCE_AT, 64, PAGE - 1, SIZE), errno.EFAULT),
}


@pytest.mark.parametrize("args, code", ERRORS.values(), ids=ERRORS.keys())
def test_technology_untouched_on_error(module: Module, args: tuple, code: int) -> None:
    assert module.call(*args) == -code
    assert module.read(TECH_AT, 4) == SENTINEL


# A module without exported memory


def test_module_without_memory_export_gets_efault() -> None:
    m = Module(FixedSource(technology=TECHNOLOGY, size=SIZE), "nomemory.wat")
    assert m.keep.memory is None
    assert m.call(NONCE_AT, 64, BUF_AT, SIZE) == -errno.EFAULT
    assert m.call(NONCE_AT, 64, 0, 0) == -errno.EFAULT


# A bug in the host side is raised, never swallowed into a return value


class BrokenSource(FixedSource):
    def evidence(self, nonce: bytes) -> bytes:
        raise RuntimeError("a bug in the source")


def test_python_exception_in_the_import_is_raised_to_the_caller() -> None:
    m = Module(BrokenSource(technology=TECHNOLOGY, size=SIZE))
    m.write(NONCE_AT, NONCE)
    with pytest.raises(RuntimeError, match="a bug in the source"):
        m.call(NONCE_AT, 64, BUF_AT, SIZE)
    assert m.call(NONCE_AT, 64, 0, 0) == SIZE  # the instance still works afterwards
