"""Every row of the get_attestation contract (docs/design.md section 1), through the native
front end: a C payload issues the raw syscall, the supervisor answers it."""

from __future__ import annotations

import errno
import subprocess

import pytest

from attestcall.frontends.native import run_native
from tests.fakes.source import FixedSource, expected_evidence
from tests.frontends.native.conftest import SIZE

SEED = 0x11


def nonce(seed: int = SEED) -> bytes:
    return bytes((seed + 7 * i) & 0xFF for i in range(64))


def run_case(payloads, capfd, case: str, source: FixedSource | None = None) -> dict[str, str]:
    """Run ``contract CASE`` under the supervisor; return its key=value output."""
    source = source or FixedSource(size=SIZE)
    status = run_native([payloads["contract"], case], source)
    out = capfd.readouterr().out
    assert status == 0, out
    fields: dict[str, str] = {}
    for line in out.split():
        key, _, value = line.partition("=")
        fields[key] = value
    return fields


def assert_error(fields: dict[str, str], code: int) -> None:
    assert int(fields["ret"]) == -code
    assert fields["rdx"] == fields["rdx_in"], "rdx must be left as the caller passed it"


def test_size_query_reports_size_and_technology(payloads, capfd):
    fields = run_case(payloads, capfd, "size")
    assert int(fields["ret"]) == SIZE
    assert int(fields["rdx"], 16) == 2


def test_size_query_ignores_buf_len_and_nonce(payloads, capfd):
    fields = run_case(payloads, capfd, "size-ignores-args")
    assert int(fields["ret"]) == SIZE
    assert int(fields["rdx"], 16) == 2


def test_success_writes_exactly_the_evidence(payloads, capfd):
    source = FixedSource(size=SIZE)
    fields = run_case(payloads, capfd, "success", source)
    assert int(fields["size"]) == SIZE
    assert int(fields["ret"]) == SIZE, "a real call writes the size-query answer"
    assert int(fields["rdx"], 16) == 2
    assert fields["guards"] == "ok"
    assert bytes.fromhex(fields["evidence"]) == expected_evidence(nonce(), SIZE)
    assert source.calls == [nonce()]


def test_larger_buffer_gets_only_the_evidence(payloads, capfd):
    fields = run_case(payloads, capfd, "larger-buffer")
    assert int(fields["ret"]) == SIZE
    assert fields["guards"] == "ok"


def test_buffer_one_byte_short_is_emsgsize(payloads, capfd):
    fields = run_case(payloads, capfd, "short")
    assert_error(fields, errno.EMSGSIZE)
    assert fields["untouched"] == "ok"
    assert fields["guards"] == "ok"


@pytest.mark.parametrize("case", ["nonce63", "nonce65", "buflen0", "buflen-huge", "buflen-max"])
def test_invalid_lengths_are_einval(payloads, capfd, case):
    assert_error(run_case(payloads, capfd, case), errno.EINVAL)


@pytest.mark.parametrize(
    "case",
    ["nonce-null", "nonce-unmapped", "nonce-straddle", "buf-unmapped", "buf-straddle"],
)
def test_unreadable_nonce_or_unwritable_buffer_is_efault(payloads, capfd, case):
    assert_error(run_case(payloads, capfd, case), errno.EFAULT)


def test_read_only_buffer_is_efault_and_unchanged(payloads, capfd):
    fields = run_case(payloads, capfd, "buf-readonly")
    assert_error(fields, errno.EFAULT)
    assert fields["untouched"] == "ok"


def test_platform_failure_is_eio(payloads, capfd):
    fields = run_case(payloads, capfd, "success", FixedSource(size=SIZE, fail=True))
    assert_error(fields, errno.EIO)
    assert fields["untouched"] == "ok"
    assert fields["guards"] == "ok"


class ExplodingSource(FixedSource):
    """A source with a bug: raises something other than PlatformFailure."""

    def evidence(self, nonce: bytes) -> bytes:
        raise RuntimeError("bug in the evidence source")


def test_unexpected_source_exception_is_eio(payloads, capfd):
    fields = run_case(payloads, capfd, "success", ExplodingSource(size=SIZE))
    assert_error(fields, errno.EIO)


@pytest.mark.parametrize("case", ["int80", "x32"])
def test_only_the_x86_64_syscall_is_trapped(payloads, capfd, case):
    source = FixedSource(size=SIZE)
    fields = run_case(payloads, capfd, case, source)
    assert int(fields["ret"]) == -errno.ENOSYS
    assert source.calls == []


def test_outside_a_keep_the_kernel_answers_enosys(payloads):
    done = subprocess.run(
        [payloads["contract"], "size"], capture_output=True, text=True, check=True
    )
    fields = dict(item.partition("=")[::2] for item in done.stdout.split())
    assert int(fields["ret"]) == -errno.ENOSYS
