"""The Python guest module and the C header inside a keep (the native front end)."""

from __future__ import annotations

import errno
import subprocess
import sys
from pathlib import Path

import pytest

from attestcall.abi import PlatformFailure
from attestcall.frontends.native import run_native
from attestcall.include_dir import include_dir
from attestcall.keep.shim import NoneSource
from tests import paths
from tests.fakes.source import FixedSource, expected_evidence

NONCE = bytes(range(64))
SIZE = 700


def run_python(
    code: str, source: object, capfd: pytest.CaptureFixture, *, err: str = ""
) -> tuple[int, list[str]]:
    """Run ``code`` in a Python payload; its stderr must end with ``err``."""
    status = run_native([sys.executable, "-c", code], source)  # type: ignore[arg-type]
    captured = capfd.readouterr()
    assert captured.err.endswith(err), captured.err
    assert err or captured.err == ""
    return status, captured.out.splitlines()


GET = """
from attestcall import guest
technology, evidence = guest.get_attestation(bytes(range(64)))
print(technology, guest.technology_name(technology))
print(evidence.hex())
"""


def test_guest_gets_evidence_in_a_keep(capfd: pytest.CaptureFixture) -> None:
    source = FixedSource(technology=3, size=SIZE)
    status, lines = run_python(GET, source, capfd)
    assert status == 0
    assert lines == ["3 SNP", expected_evidence(NONCE, SIZE).hex()]
    assert source.calls == [NONCE]




def test_guest_in_a_keep_without_tee_gets_nothing(capfd: pytest.CaptureFixture) -> None:
    status, lines = run_python(GET, NoneSource(), capfd)
    assert status == 0
    assert lines == ["0 NONE", ""]


class GrowingSource(FixedSource):
    """Each evidence_size answer is larger than the one before (the core asks twice per
    call: at the size query and when checking buf_len)."""

    def evidence_size(self) -> int:
        self.size += 100
        return self.size


def test_guest_retries_once_when_the_size_changed(capfd: pytest.CaptureFixture) -> None:
    source = GrowingSource(technology=2, size=SIZE)
    message = f"OSError: [Errno {errno.EMSGSIZE}] Message too long\n"
    status, lines = run_python(GET, source, capfd, err=message)
    assert status == 1  # the size changed on the retry too
    assert source.size == SIZE + 400  # two size queries and two calls, no third attempt


class ChangesOnce(FixedSource):
    """The size grows once, between the first size query and the first call."""

    def __init__(self) -> None:
        super().__init__(technology=2, size=SIZE)
        self.answers = 0

    def evidence_size(self) -> int:
        self.answers += 1
        if self.answers == 2:
            self.size += 100
        return self.size


def test_guest_retry_succeeds_when_the_size_settles(capfd: pytest.CaptureFixture) -> None:
    source = ChangesOnce()
    status, lines = run_python(GET, source, capfd)
    assert status == 0
    assert lines == ["2 SGX", expected_evidence(NONCE, SIZE + 100).hex()]


ERRORS = """
import ctypes, errno
from attestcall import guest
try:
    guest.get_attestation(bytes(64))
except OSError as e:
    print("OSError", e.errno)
nonce = ctypes.create_string_buffer(bytes(range(64)), 64)
buffer = ctypes.create_string_buffer(1000)
print(*guest.raw_get_attestation(ctypes.addressof(nonce), 64, 0, 0))
short = guest.raw_get_attestation(ctypes.addressof(nonce), 64, ctypes.addressof(buffer), 699)
print(short[0], short[1] == ctypes.addressof(buffer))
bad = guest.raw_get_attestation(ctypes.addressof(nonce), 63, ctypes.addressof(buffer), 1000)
print(bad[0], bad[1] == ctypes.addressof(buffer))
"""


class FailingSource(FixedSource):
    """The platform fails when asked for evidence, not for its size."""

    def evidence(self, nonce: bytes) -> bytes:
        raise PlatformFailure("simulated")


def test_guest_errors_in_a_keep(capfd: pytest.CaptureFixture) -> None:
    status, lines = run_python(ERRORS, FailingSource(technology=4, size=SIZE), capfd)
    assert status == 0
    assert lines == [
        f"OSError {errno.EIO}",
        f"{SIZE} 4",  # size query: rax = size, rdx = technology
        f"{-errno.EMSGSIZE} True",  # error: rdx left as passed (the buffer pointer)
        f"{-errno.EINVAL} True",
    ]


@pytest.fixture(scope="module")
def c_payload(tmp_path_factory: pytest.TempPathFactory) -> Path:
    executable = tmp_path_factory.mktemp("guest-in-keep") / "in_keep"
    subprocess.run(
        ["gcc", "-O2", "-Wall", "-Wextra", "-Werror", "-std=c11", "-I", str(include_dir()),
         str(paths.C / "in_keep.c"), "-o", str(executable)],
        check=True, timeout=120,
    )
    return executable


def test_header_in_a_keep(c_payload: Path, capfd: pytest.CaptureFixture) -> None:
    source = FixedSource(technology=2, size=SIZE)
    assert run_native([str(c_payload)], source) == 0
    assert capfd.readouterr().out.splitlines() == [
        f"size-query {SIZE} 2",
        f"short -1 {errno.EMSGSIZE} 77",  # *technology untouched on error
        f"call {SIZE} 2",
        expected_evidence(NONCE, SIZE).hex(),
    ]
