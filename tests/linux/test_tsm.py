"""configfs-tsm (attestcall.linux.tsm) against the configfs fake: the protocol, the generation
check, cleanup, and every error path."""

from __future__ import annotations

import errno

import pytest

from attestcall.abi import PlatformFailure, Technology
from attestcall.amd.formats import certs as amdcerts
from attestcall.amd.formats import report as snp
from attestcall.linux.tsm import TsmClient, TsmError, TsmRaceError
from tests.fakes import blobs
from tests.fakes.configfs_tsm import ROOT, FakeTsm

NONCE = bytes(range(0x40, 0x80))


def client(fake: FakeTsm, **kwargs) -> TsmClient:
    return TsmClient(fake.root, files=fake, **kwargs)


def assert_clean(fake: FakeTsm) -> None:
    assert fake.instances == {}, "every report instance must be removed"
    assert sorted(fake.made) == sorted(fake.removed)


# ---------------------------------------------------------------------------- the fake


def test_fake_inblob_longer_than_64_is_efbig():
    fake = FakeTsm()
    fake.mkdir(f"{ROOT}/r")
    with pytest.raises(OSError) as info:
        fake.write(f"{ROOT}/r/inblob", bytes(65))
    assert info.value.errno == errno.EFBIG


@pytest.mark.parametrize("provider", ["sev_guest", "tdx_guest"])
def test_fake_inblob_shorter_than_64_is_einval_at_outblob(provider):
    fake = FakeTsm(provider=provider)
    fake.mkdir(f"{ROOT}/r")
    assert fake.write(f"{ROOT}/r/inblob", bytes(63)) == 63
    with pytest.raises(OSError) as info:
        fake.read(f"{ROOT}/r/outblob")
    assert info.value.errno == errno.EINVAL


def test_fake_outblob_before_inblob_is_einval():
    fake = FakeTsm()
    fake.mkdir(f"{ROOT}/r")
    with pytest.raises(OSError) as info:
        fake.read(f"{ROOT}/r/outblob")
    assert info.value.errno == errno.EINVAL


def test_fake_generation_counts_writes_and_reports_are_cached():
    fake = FakeTsm()
    fake.mkdir(f"{ROOT}/r")
    assert fake.read(f"{ROOT}/r/generation") == b"0\n"
    fake.write(f"{ROOT}/r/privlevel", b"1\n")
    fake.write(f"{ROOT}/r/inblob", NONCE)
    assert fake.read(f"{ROOT}/r/generation") == b"2\n"
    first = fake.read(f"{ROOT}/r/outblob")
    assert fake.read(f"{ROOT}/r/outblob") == first and fake.reports == 1
    assert snp.parse(first).vmpl == 1


def test_fake_tdx_has_no_privlevel_or_auxblob():
    fake = FakeTsm(provider="tdx_guest")
    fake.mkdir(f"{ROOT}/r")
    assert not fake.exists(f"{ROOT}/r/auxblob")
    assert not fake.exists(f"{ROOT}/r/privlevel")
    with pytest.raises(OSError) as info:
        fake.write(f"{ROOT}/r/privlevel", b"0")
    assert info.value.errno == errno.ENOENT


# ---------------------------------------------------------------------------- success


def test_sev_guest_report_is_outblob_then_auxblob():
    fake = FakeTsm(provider="sev_guest")
    report = client(fake).report(NONCE)
    assert report.provider == "sev_guest" and report.technology == Technology.SNP
    assert len(report.outblob) == snp.REPORT_SIZE
    assert snp.parse(report.outblob).report_data == NONCE
    assert report.auxblob == blobs.cert_table()
    assert [e.name for e in amdcerts.parse_table(report.auxblob)] == ["VCEK", "ASK", "ARK"]
    assert report.evidence == report.outblob + report.auxblob
    assert_clean(fake)


def test_tdx_guest_report_is_outblob_only():
    fake = FakeTsm(provider="tdx_guest")
    report = client(fake).report(NONCE)
    assert report.technology == Technology.TDX
    assert report.evidence == report.outblob == blobs.tdx_quote(NONCE)
    offset = blobs.TDX_QUOTE_REPORT_DATA_OFFSET
    assert report.evidence[offset:offset + 64] == NONCE
    assert_clean(fake)


def test_sev_guest_without_certificates_has_empty_auxblob():
    fake = FakeTsm(certs=b"")
    assert client(fake).report(NONCE).evidence == blobs.snp_report(NONCE)


def test_privlevel_is_written_and_counted():
    fake = FakeTsm(privlevel_floor=0)
    report = client(fake, privlevel=2).report(NONCE)
    assert snp.parse(report.outblob).vmpl == 2
    assert_clean(fake)


def test_privlevel_below_floor_is_refused():
    fake = FakeTsm(privlevel_floor=1)
    with pytest.raises(TsmError, match="EINVAL") as info:
        client(fake, privlevel=0).report(NONCE)
    assert info.value.errno == errno.EINVAL
    assert_clean(fake)


def test_privlevel_with_tdx_is_refused():
    fake = FakeTsm(provider="tdx_guest")
    with pytest.raises(TsmError, match="no privlevel"):
        client(fake, privlevel=0).report(NONCE)
    assert_clean(fake)


def test_provider_is_read_from_a_temporary_instance():
    fake = FakeTsm(provider="tdx_guest")
    assert client(fake).provider() == "tdx_guest"
    assert len(fake.made) == 1
    assert_clean(fake)


def test_size_is_learned_from_a_zero_nonce_report_and_cached():
    fake = FakeTsm()
    tsm = client(fake)
    size = tsm.evidence_size("sev_guest")
    assert size == snp.REPORT_SIZE + len(blobs.cert_table())
    assert fake.reports == 1
    assert tsm.evidence_size("sev_guest") == size and fake.reports == 1, "cached"
    assert len(tsm.report(NONCE).evidence) == size


def test_size_follows_a_change_in_the_certificates():
    fake = FakeTsm()
    tsm = client(fake)
    first = tsm.evidence_size("sev_guest")
    fake.certs = b""
    assert len(tsm.report(NONCE).evidence) == snp.REPORT_SIZE
    assert tsm.evidence_size("sev_guest") == snp.REPORT_SIZE != first


# ---------------------------------------------------------------------------- errors


def test_wrong_nonce_size_is_a_caller_bug():
    fake = FakeTsm()
    for size in (0, 63, 65):
        with pytest.raises(ValueError):
            client(fake).report(bytes(size))
    assert fake.made == []


def test_concurrent_writer_is_retried():
    fake = FakeTsm(concurrent_writes=2)
    report = client(fake, attempts=3).report(NONCE)
    assert snp.parse(report.outblob).report_data == NONCE
    assert len(fake.made) == 3, "two spoiled attempts, each in its own instance"
    assert_clean(fake)


def test_concurrent_writer_every_time_is_eio():
    fake = FakeTsm(concurrent_writes=10)
    with pytest.raises(TsmRaceError, match="3 attempts"):
        client(fake, attempts=3).report(NONCE)
    assert len(fake.made) == 3
    assert_clean(fake)


def test_dropped_inblob_commit_leaves_no_report():
    """Older kernels ignore a failed inblob commit at close: the instance has no inblob."""
    fake = FakeTsm(drop_writes=True)
    with pytest.raises(TsmError, match="EINVAL") as info:
        client(fake).report(NONCE)
    assert info.value.errno == errno.EINVAL
    assert_clean(fake)


def test_dropped_write_is_detected_by_the_generation():
    fake = FakeTsm()
    original = fake.write

    def drop_privlevel(path: str, data: bytes) -> int:
        if path.endswith("/privlevel"):
            return len(data)  # "accepted", never committed
        return original(path, data)

    fake.write = drop_privlevel  # type: ignore[method-assign]
    with pytest.raises(TsmError, match="from 0 to 1 over 2 write.*not accepted"):
        client(fake, privlevel=1).report(NONCE)
    assert_clean(fake)


def test_ebusy_is_platform_failure():
    fake = FakeTsm(busy=True)
    with pytest.raises(TsmError, match="EBUSY") as info:
        client(fake).report(NONCE)
    assert isinstance(info.value, PlatformFailure)
    assert info.value.errno == errno.EBUSY
    assert_clean(fake)


def test_enxio_without_provider():
    fake = FakeTsm(provider=None)
    with pytest.raises(TsmError, match="no TSM provider") as info:
        client(fake).report(NONCE)
    assert info.value.errno == errno.ENXIO
    assert "sev_guest, tdx_guest, arm_cca_guest?" in str(info.value)  # every registered one
    assert fake.made == []


def test_provider_gone_after_mkdir_is_enotty():
    fake = FakeTsm()
    original = fake.write

    def unregister_on_inblob(path: str, data: bytes) -> int:
        written = original(path, data)
        fake.provider = None
        return written

    fake.write = unregister_on_inblob  # type: ignore[method-assign]
    with pytest.raises(TsmError, match="ENOTTY"):
        client(fake).report(NONCE)
    assert_clean(fake)


@pytest.mark.parametrize("code", [errno.EIO, errno.ETIMEDOUT, errno.ENOMEM, errno.EINTR])
def test_report_generation_errors(code):
    fake = FakeTsm(report_error=code)
    with pytest.raises(TsmError) as info:
        client(fake).report(NONCE)
    assert info.value.errno == code
    assert errno.errorcode[code] in str(info.value)
    assert_clean(fake)


def test_short_inblob_write_is_failure():
    fake = FakeTsm(short_write=32)
    with pytest.raises(TsmError, match="short write.*32 of 64"):
        client(fake).report(NONCE)
    assert_clean(fake)


def test_unknown_provider():
    fake = FakeTsm(provider="cca_guest")
    with pytest.raises(TsmError, match="unsupported provider 'cca_guest'"):
        client(fake).report(NONCE)
    assert_clean(fake)


def test_missing_root_is_enoent():
    fake = FakeTsm(present=False)
    with pytest.raises(TsmError, match="ENOENT.*CONFIG_TSM_REPORTS"):
        client(fake).report(NONCE)


def test_unwritable_root_is_eacces():
    fake = FakeTsm(root_writable=False)
    with pytest.raises(TsmError, match="needs root"):
        client(fake).report(NONCE)


def test_wrong_sized_sev_outblob_is_refused():
    fake = FakeTsm()
    original = fake.read

    def truncated(path: str) -> bytes:
        data = original(path)
        return data[:1000] if path.endswith("/outblob") else data

    fake.read = truncated  # type: ignore[method-assign]
    with pytest.raises(TsmError, match="1000 bytes, not 1184"):
        client(fake).report(NONCE)
    assert_clean(fake)


def test_garbled_generation_is_refused():
    fake = FakeTsm()
    original = fake.read

    def garbled(path: str) -> bytes:
        return b"lots\n" if path.endswith("/generation") else original(path)

    fake.read = garbled  # type: ignore[method-assign]
    with pytest.raises(TsmError, match="not a number"):
        client(fake).report(NONCE)
    assert_clean(fake)


def test_rmdir_failure_after_success_is_reported():
    fake = FakeTsm(rmdir_error=errno.EBUSY)
    with pytest.raises(TsmError, match="cannot remove"):
        client(fake).report(NONCE)


def test_rmdir_failure_during_an_error_keeps_the_first_error():
    fake = FakeTsm(busy=True, rmdir_error=errno.EBUSY)
    with pytest.raises(TsmError, match="cannot write") as info:
        client(fake).report(NONCE)
    assert any("cannot remove" in note for note in info.value.__notes__)


def test_arguments_are_checked():
    with pytest.raises(ValueError):
        TsmClient(ROOT, privlevel=4)
    with pytest.raises(ValueError):
        TsmClient(ROOT, attempts=0)
