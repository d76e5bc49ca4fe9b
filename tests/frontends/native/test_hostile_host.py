"""A hostile host seen from a native payload: -EIO, rdx untouched, guard bytes intact."""

import errno

import pytest

from attestcall.frontends.native import run_native
from tests.fakes.hostile_sgx_host import Garbage, Hangs, OtherRequest, TooLong, hostile_keep


@pytest.mark.parametrize("kind", [TooLong, OtherRequest, Garbage, Hangs])
def test_native_payload_sees_eio(payloads, capfd, kind):
    keep = hostile_keep(kind, timeout=0.3)
    try:
        status = run_native([payloads["contract"], "success"], keep.source)
    finally:
        keep.close()
    out = capfd.readouterr().out
    assert status == 0, out
    fields = dict(line.partition("=")[::2] for line in out.split())
    assert int(fields["ret"]) == -errno.EIO
    assert fields["rdx"] == fields["rdx_in"]
    assert fields["guards"] == "ok" and fields["untouched"] == "ok"
    assert int(fields["size"]) > 4000  # the size query itself was answered honestly
