"""/dev/sev-guest (attestcall.amd.client.sev_guest) against the fake driver: struct layouts, the
certificate-buffer growth protocol, the fallback to SNP_GET_REPORT, and every error path."""

from __future__ import annotations

import ctypes
import errno

import pytest

from attestcall.abi import PlatformFailure
from attestcall.amd.client import sev_guest
from attestcall.amd.client.sev_guest import SevGuestDevice, SevGuestError
from attestcall.amd.formats import certs as amdcerts
from attestcall.amd.formats import report as snp
from tests.fakes import blobs
from tests.fakes import sev_guest as fake_driver
from tests.fakes.sev_guest import FakeSevGuest

NONCE = bytes(range(0x80, 0xC0))


@pytest.fixture
def device_path(tmp_path) -> str:
    """A file standing where the device would be: it opens, the fake answers the ioctls."""
    path = tmp_path / "sev-guest"
    path.write_bytes(b"")
    return str(path)


def device(path: str, fake: FakeSevGuest, **kwargs) -> SevGuestDevice:
    return SevGuestDevice(path, ioctl=fake.ioctl, **kwargs)


# ---------------------------------------------------------------------------- the ABI


def test_ioctl_numbers_match_the_uapi_header():
    assert sev_guest.SNP_GET_REPORT == 0xC0205300 == fake_driver.GET_REPORT
    assert sev_guest.SNP_GET_DERIVED_KEY == 0xC0205301
    assert sev_guest.SNP_GET_EXT_REPORT == 0xC0205302


def test_struct_layouts_byte_for_byte():
    io = sev_guest.GuestRequestIoctl(1, 0x1122334455667788, 0x99AABBCCDDEEFF00,
                                     (7 << 32) | 0x16)
    assert bytes(io) == fake_driver.IOCTL.pack(1, 0x1122334455667788, 0x99AABBCCDDEEFF00,
                                               (7 << 32) | 0x16)
    assert io.fw_error == 0x16 and io.vmm_error == 7
    request = sev_guest.ReportRequest()
    ctypes.memmove(request.user_data, NONCE, 64)
    request.vmpl = 2
    assert bytes(request) == fake_driver.REPORT_REQ.pack(NONCE, 2, bytes(28))
    ext = sev_guest.ExtReportRequest(request, 0xDEADBEEF000, 8192)
    assert bytes(ext) == fake_driver.EXT_REPORT_REQ.pack(NONCE, 2, bytes(28), 0xDEADBEEF000,
                                                         8192)
    assert sev_guest.ExtReportRequest.certs_len.offset == fake_driver.CERTS_LEN_OFFSET


def test_parse_response_strictly():
    report = blobs.snp_report(NONCE)
    good = fake_driver.struct.pack("<II24s", 0, 1184, bytes(24)) + report
    assert sev_guest.parse_response(good.ljust(4000, b"\0")) == report
    with pytest.raises(SevGuestError, match="too short"):
        sev_guest.parse_response(good[:1000])


def test_cert_table_extent():
    table = blobs.cert_table()
    assert sev_guest.cert_table_extent(table.ljust(8192, b"\0")) == len(table)
    assert sev_guest.cert_table_extent(bytes(4096)) == 0
    with pytest.raises(SevGuestError, match="no terminating entry"):
        sev_guest.cert_table_extent(b"\x01" * 4096)
    pointing_out = amdcerts.ENTRY.pack(amdcerts.VCEK_GUID.bytes, 48, 9000) + bytes(24)
    with pytest.raises(SevGuestError, match="points past"):
        sev_guest.cert_table_extent(pointing_out.ljust(4096, b"\0"))


# ---------------------------------------------------------------------------- success


def test_extended_report_grows_the_certificate_buffer(device_path):
    fake = FakeSevGuest()
    dev = device(device_path, fake)
    report, table = dev.report(NONCE)
    assert snp.parse(report).report_data == NONCE
    assert table == blobs.cert_table(), "cut after the furthest certificate, like auxblob"
    assert fake.calls == [(sev_guest.SNP_GET_EXT_REPORT, 4096),
                          (sev_guest.SNP_GET_EXT_REPORT, 8192)]
    assert dev.certs_len == 8192
    dev.report(NONCE)
    assert fake.calls[2:] == [(sev_guest.SNP_GET_EXT_REPORT, 8192)], "the grown size is kept"


def test_evidence_is_report_then_table(device_path):
    fake = FakeSevGuest()
    evidence = device(device_path, fake).evidence(NONCE)
    assert evidence == blobs.snp_report(NONCE) + blobs.cert_table()


def test_no_certificates_from_the_host(device_path):
    fake = FakeSevGuest(certs=b"")
    report, table = device(device_path, fake).report(NONCE)
    assert table == b"" and len(report) == 1184
    assert len(fake.calls) == 1


def test_vmpl_is_requested(device_path):
    fake = FakeSevGuest()
    report, _ = device(device_path, fake, vmpl=1).report(NONCE)
    assert fake.vmpls == [1] and snp.parse(report).vmpl == 1


@pytest.mark.parametrize("knob", ["ext_supported", "ext_einval"])
def test_fallback_to_plain_report(device_path, knob):
    fake = FakeSevGuest(**{knob: knob == "ext_einval"})
    dev = device(device_path, fake)
    report, table = dev.report(NONCE)
    assert snp.parse(report).report_data == NONCE and table == b""
    assert dev.extended is False and dev.fallback_reason
    assert fake.calls[-1] == (sev_guest.SNP_GET_REPORT, 0)
    calls = len(fake.calls)
    dev.report(NONCE)
    assert fake.calls[calls:] == [(sev_guest.SNP_GET_REPORT, 0)], "the fallback is sticky"


# ---------------------------------------------------------------------------- errors


def test_firmware_error(device_path):
    fake = FakeSevGuest(fw_error=0x16)
    with pytest.raises(SevGuestError, match="firmware error 0x16, VMM error 0x0") as info:
        device(device_path, fake).report(NONCE)
    assert isinstance(info.value, PlatformFailure)
    assert info.value.errno == errno.EIO and info.value.fw_error == 0x16


def test_vmm_error(device_path):
    fake = FakeSevGuest(vmm_error=3)
    with pytest.raises(SevGuestError, match="VMM error 0x3") as info:
        device(device_path, fake).report(NONCE)
    assert info.value.vmm_error == 3 and info.value.fw_error == 0


def test_vmpck_disabled_fails_after_the_fallback(device_path):
    fake = FakeSevGuest(vmpck_disabled=True)
    with pytest.raises(SevGuestError, match="SNP_GET_REPORT failed.*ENOTTY") as info:
        device(device_path, fake).report(NONCE)
    assert any("SNP_GET_EXT_REPORT was refused" in note for note in info.value.__notes__)


def test_certificates_larger_than_the_driver_allows(device_path):
    fake = FakeSevGuest(certs=b"\x01" * 20000)
    with pytest.raises(SevGuestError, match="more than the driver's 16384"):
        device(device_path, fake).report(NONCE)


def test_growth_is_bounded(device_path):
    """A host whose certificates grow before every request is given up on."""
    fake = FakeSevGuest(certs=b"\x01" * 100)

    def growing(fd, request, arg, mutate=True):
        fake.certs += b"\x01" * 4096
        return fake.ioctl(fd, request, arg, mutate)

    with pytest.raises(SevGuestError, match="after 3 requests"):
        SevGuestDevice(device_path, ioctl=growing, growth_attempts=3).report(NONCE)
    assert [length for _, length in fake.calls] == [4096, 8192, 12288]


def test_invalid_length_that_does_not_grow(device_path):
    fake = FakeSevGuest(lie_certs_len=4096)
    with pytest.raises(SevGuestError, match="not more than the 4096 given"):
        device(device_path, fake).report(NONCE)


@pytest.mark.parametrize(
    ("knobs", "message"),
    [
        ({"status": 0x16}, "status 0x16 INVALID_PARAM"),
        ({"status": 0x27}, "status 0x27 INVALID_KEY"),
        ({"status": 0x99}, "status 0x99"),
        ({"report_size": 1000}, "report_size is 1000"),
        ({"report_size": 0}, "report_size is 0"),
        ({"reserved": b"\x01" + bytes(23)}, "reserved bytes"),
        ({"response": bytes(4000)}, "report_size is 0"),
        ({"response": b"\xff" * 4000}, "status 0xffffffff"),
    ],
)
def test_garbled_responses(device_path, knobs, message):
    fake = FakeSevGuest(**knobs)
    with pytest.raises(SevGuestError, match=message):
        device(device_path, fake).report(NONCE)


def test_garbled_certificate_table(device_path):
    fake = FakeSevGuest(certs_override=b"\x01" * 4096)
    with pytest.raises(SevGuestError, match="no terminating entry"):
        device(device_path, fake).report(NONCE)


def test_message_version_zero_is_einval_and_not_a_fallback(device_path):
    fake = FakeSevGuest()
    dev = device(device_path, fake, msg_version=0)
    with pytest.raises(SevGuestError, match="EINVAL.*firmware error 0xff"):
        dev.report(NONCE)


def test_missing_device(tmp_path):
    with pytest.raises(SevGuestError, match="cannot open.*ENOENT") as info:
        SevGuestDevice(str(tmp_path / "absent"), ioctl=FakeSevGuest().ioctl).report(NONCE)
    assert info.value.errno == errno.ENOENT


def test_real_ioctl_on_a_file_is_enotty(device_path):
    """The default ioctl (fcntl.ioctl) really runs: on a regular file every request is
    ENOTTY, so the extended request falls back and the plain one fails cleanly."""
    dev = SevGuestDevice(device_path)
    with pytest.raises(SevGuestError, match="SNP_GET_REPORT failed.*ENOTTY"):
        dev.report(NONCE)
    assert dev.extended is False


def test_arguments_are_checked(device_path):
    with pytest.raises(ValueError):
        SevGuestDevice(device_path, vmpl=4)
    with pytest.raises(ValueError):
        SevGuestDevice(device_path, certs_len=100)
    with pytest.raises(ValueError):
        device(device_path, FakeSevGuest()).report(bytes(63))
