"""Every row of the contract table from a Python payload in a keep (the raw syscall through
attestcall.guest's thunk, the native front end answering it)."""

from __future__ import annotations

import errno
import json
import mmap
import subprocess
import sys

import pytest

from tests import paths
from tests.fakes.source import expected_evidence

SIZE = 900
NONCE = bytes(range(64))

PAYLOAD = r"""
import ctypes, json, mmap
from attestcall.guest import raw_get_attestation as call

libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                      ctypes.c_int, ctypes.c_long]
libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
PAGE = mmap.PAGESIZE
SIZE = %(size)d

def pages(n):
    p = libc.mmap(None, n * PAGE, 3, 0x22, -1, 0)  # RW, MAP_PRIVATE|MAP_ANONYMOUS
    ctypes.memset(p, 0xA5, n * PAGE)
    return p

nonce = ctypes.create_string_buffer(bytes(range(64)), 64)
n = ctypes.addressof(nonce)
region = pages(4)
buf = region + PAGE
hole = pages(3)
libc.munmap(hole + PAGE, 2 * PAGE)          # [hole, hole+PAGE) mapped, then unmapped
ro = pages(1)
libc.mprotect(ro, PAGE, 1)                  # PROT_READ
straddle_nonce = hole + PAGE - 32
ctypes.memmove(straddle_nonce, bytes(32), 32)

rows = {
    "size": call(0, 0, 0, 0),
    "size_ignores": call(8, 3, 0, 2**64 - 1),
    "short": call(n, 64, buf, SIZE - 1),
    "nonce63": call(n, 63, buf, SIZE),
    "nonce65": call(n, 65, buf, SIZE),
    "buflen0": call(n, 64, buf, 0),
    "buflen_huge": call(n, 64, buf, 2**63),
    "nonce_unmapped": call(hole + PAGE, 64, buf, SIZE),
    "nonce_straddle": call(straddle_nonce, 64, buf, SIZE),
    "buf_unmapped": call(n, 64, hole + PAGE, SIZE),
    "buf_straddle": call(n, 64, hole + PAGE - SIZE // 2, SIZE),
    "buf_readonly": call(n, 64, ro, SIZE),
}
guards_before = ctypes.string_at(region, PAGE) + ctypes.string_at(buf + SIZE, 3 * PAGE - SIZE)
rows["success"] = call(n, 64, buf, SIZE + 100)
guards_after = ctypes.string_at(region, PAGE) + ctypes.string_at(buf + SIZE, 3 * PAGE - SIZE)
print(json.dumps({
    "rows": rows, "buf": buf, "hole": hole, "ro": ro,
    "evidence": ctypes.string_at(buf, SIZE).hex(),
    "guards": guards_before == guards_after,
    "ro_untouched": ctypes.string_at(ro, PAGE) == b"\xa5" * PAGE,
}))
"""


@pytest.fixture(scope="module")
def result():
    script = (
        "import json, sys\n"
        "from attestcall.frontends.native import run_native\n"
        "from tests.fakes.source import FixedSource\n"
        f"sys.exit(run_native([sys.executable, '-c', {PAYLOAD % {'size': SIZE}!r}], "
        f"FixedSource(technology=2, size={SIZE})))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, cwd=paths.REPO)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_size_query_and_success(result):
    rows = result["rows"]
    assert rows["size"] == [SIZE, 2]
    assert rows["size_ignores"] == [SIZE, 2]
    assert rows["success"] == [SIZE, 2]
    assert bytes.fromhex(result["evidence"]) == expected_evidence(NONCE, SIZE)
    assert result["guards"]


@pytest.mark.parametrize(
    "row, code",
    [
        ("short", errno.EMSGSIZE),
        ("nonce63", errno.EINVAL),
        ("nonce65", errno.EINVAL),
        ("buflen0", errno.EINVAL),
        ("buflen_huge", errno.EINVAL),
        ("nonce_unmapped", errno.EFAULT),
        ("nonce_straddle", errno.EFAULT),
        ("buf_unmapped", errno.EFAULT),
        ("buf_straddle", errno.EFAULT),
        ("buf_readonly", errno.EFAULT),
    ],
)
def test_error_rows_leave_rdx_as_passed(result, row, code):
    rax, rdx = result["rows"][row]
    assert rax == -code
    # rdx enters as the buffer pointer and must come back unchanged
    page = mmap.PAGESIZE
    expected = {
        "buf_unmapped": result["hole"] + page,
        "buf_straddle": result["hole"] + page - SIZE // 2,
        "buf_readonly": result["ro"],
    }.get(row, result["buf"])
    assert rdx == expected


def test_read_only_buffer_is_not_written(result):
    assert result["ro_untouched"]
