"""The real backends as EvidenceSources (attestcall.keep.real and each device client): the
get_attestation contract
through the core with each one over its fake, probing, detection, opening by name, and one
native payload end to end over the configfs-tsm fake."""

from __future__ import annotations

import errno
import shutil
import subprocess
from pathlib import Path

import pytest

from attestcall.abi import BufferMemory, Technology, get_attestation
from attestcall.amd.client.sev_guest import SevGuestDevice, SevGuestSource
from attestcall.amd.formats import report as snp
from attestcall.errors import BackendUnavailable, UsageError
from attestcall.frontends.native import run_native
from attestcall.intel.client.gramine import GramineClient, GramineSource, probe_gramine
from attestcall.keep import real
from attestcall.keep.platforms import open_keep
from attestcall.linux.tsm import TsmClient, TsmSource, probe_tsm
from attestcall.tees import Probe as ProbeResult
from tests import paths
from tests.fakes import blobs
from tests.fakes.configfs_tsm import FakeTsm
from tests.fakes.gramine import FakeGramine
from tests.fakes.sev_guest import FakeSevGuest

NONCE = bytes((0x11 + 7 * i) & 0xFF for i in range(64))  # contract.c's fill_nonce(SEED)
BASE = 0x10000
NONCE_AT = BASE
BUF_AT = BASE + 64
CONTRACT_C = paths.NATIVE_C / "contract.c"


def tsm_source(fake: FakeTsm) -> TsmSource:
    return TsmSource(TsmClient(fake.root, files=fake))


@pytest.fixture
def device_path(tmp_path) -> str:
    path = tmp_path / "sev-guest"
    path.write_bytes(b"")
    return str(path)


def call(source, buf_len: int | None = None, buf_ptr: int = BUF_AT):
    """get_attestation through the core: size query, then a real call into a buffer."""
    size_query = get_attestation(0, 0, 0, 0, memory=BufferMemory(bytearray(64)), source=source)
    length = size_query.ret if buf_len is None else buf_len
    memory = BufferMemory(bytearray(NONCE + bytes(max(length, 1) + 64)), base=BASE)
    outcome = get_attestation(NONCE_AT, 64, buf_ptr, length, memory=memory, source=source)
    written = bytes(memory.data[64:64 + max(outcome.ret, 0)])
    return size_query, outcome, written, memory


# ---------------------------------------------------------------------------- the contract


def test_tsm_snp_through_the_core():
    fake = FakeTsm(provider="sev_guest")
    size_query, outcome, written, _ = call(tsm_source(fake))
    assert size_query.technology == Technology.SNP
    assert outcome.ok and outcome.technology == Technology.SNP
    assert outcome.ret == size_query.ret == 1184 + len(blobs.cert_table())
    assert snp.parse(written[:1184]).report_data == NONCE
    assert written[1184:] == blobs.cert_table()
    assert fake.instances == {}


def test_tsm_tdx_through_the_core():
    fake = FakeTsm(provider="tdx_guest")
    size_query, outcome, written, _ = call(tsm_source(fake))
    assert size_query.technology == outcome.technology == Technology.TDX
    assert outcome.ret == size_query.ret == len(blobs.tdx_quote(NONCE))
    offset = blobs.TDX_QUOTE_REPORT_DATA_OFFSET
    assert written[offset:offset + 64] == NONCE


def test_sev_guest_through_the_core(device_path):
    fake = FakeSevGuest()
    source = SevGuestSource(SevGuestDevice(device_path, ioctl=fake.ioctl))
    size_query, outcome, written, _ = call(source)
    assert size_query.technology == outcome.technology == Technology.SNP
    assert outcome.ret == size_query.ret == 1184 + len(blobs.cert_table())
    assert snp.parse(written[:1184]).report_data == NONCE
    assert written[1184:] == blobs.cert_table()


def test_gramine_through_the_core():
    fake = FakeGramine()
    size_query, outcome, written, _ = call(GramineSource(GramineClient(fake.root, files=fake)))
    assert size_query.technology == outcome.technology == Technology.SGX
    assert outcome.ret == size_query.ret == fake.quote_size
    offset = blobs.SGX_QUOTE_REPORT_DATA_OFFSET
    assert written[offset:offset + 64] == NONCE


def test_short_buffer_is_emsgsize_without_a_report():
    fake = FakeTsm()
    source = tsm_source(fake)
    size = source.evidence_size()
    reports = fake.reports
    _, outcome, _, memory = call(source, buf_len=size - 1)
    assert outcome.ret == -errno.EMSGSIZE and outcome.technology is None
    assert fake.reports == reports, "no report is made for a buffer that cannot hold it"
    assert not any(memory.data[64:])


@pytest.mark.parametrize(
    "break_it",
    [
        lambda fake: setattr(fake, "busy", True),
        lambda fake: setattr(fake, "provider", None),
        lambda fake: setattr(fake, "concurrent_writes", 99),
        lambda fake: setattr(fake, "report_error", errno.ETIMEDOUT),
    ],
    ids=["ebusy", "enxio", "race", "timeout"],
)
def test_tsm_failures_are_eio(break_it):
    fake = FakeTsm()
    source = tsm_source(fake)
    break_it(fake)
    size_query = get_attestation(0, 0, 0, 0, memory=BufferMemory(bytearray(64)), source=source)
    assert size_query.ret == -errno.EIO and size_query.technology is None
    memory = BufferMemory(bytearray(NONCE + bytes(8192)), base=BASE)
    outcome = get_attestation(NONCE_AT, 64, BUF_AT, 8192, memory=memory, source=source)
    assert outcome.ret == -errno.EIO
    assert not any(memory.data[64:])
    assert fake.instances == {}


def test_sev_guest_failure_is_eio(device_path):
    source = SevGuestSource(SevGuestDevice(device_path, ioctl=FakeSevGuest(fw_error=0x16).ioctl))
    size_query, outcome, _, _ = call(source, buf_len=8192)
    assert size_query.ret == -errno.EIO and outcome.ret == -errno.EIO


def test_gramine_failure_is_eio():
    fake = FakeGramine(attestation_type="none")
    _, outcome, _, _ = call(GramineSource(GramineClient(fake.root, files=fake)), buf_len=8192)
    assert outcome.ret == -errno.EIO


def test_size_change_between_query_and_call_is_eio():
    """The host changed its certificates after the size was learned: the call fails with
    EIO (never a partial write), and the next size query tells the new size."""
    fake = FakeTsm()
    source = tsm_source(fake)
    old = source.evidence_size()
    fake.certs = b""
    memory = BufferMemory(bytearray(NONCE + bytes(old)), base=BASE)
    outcome = get_attestation(NONCE_AT, 64, BUF_AT, old, memory=memory, source=source)
    assert outcome.ret == -errno.EIO
    assert source.evidence_size() == 1184
    _, again, written, _ = call(source)
    assert again.ret == 1184 and snp.parse(written).report_data == NONCE


# ---------------------------------------------------------------------------- probing


def paths(tmp_path: Path, tsm: FakeTsm, gramine_root: str, sev: str | None = None,
          files=None) -> dict:
    """The real backends' options pointing at the fakes (efi_secret: absent)."""
    return {"tsm_root": tsm.root, "sev_guest_path": sev or str(tmp_path / "no-sev-guest"),
            "gramine_root": gramine_root, "efi_secret_root": str(tmp_path / "no-efi-secret"),
            "files": files}


class Both:
    """One Files over two fakes (configfs-tsm and /dev/attestation), by path prefix."""

    def __init__(self, tsm: FakeTsm, gramine: FakeGramine):
        self.tsm = tsm
        self.gramine = gramine

    def _pick(self, path: str):
        return self.gramine if path.startswith(self.gramine.root) else self.tsm

    def mkdir(self, path: str) -> None:
        self._pick(path).mkdir(path)

    def rmdir(self, path: str) -> None:
        self._pick(path).rmdir(path)

    def read(self, path: str) -> bytes:
        return self._pick(path).read(path)

    def write(self, path: str, data: bytes) -> int:
        return self._pick(path).write(path, data)

    def exists(self, path: str) -> bool:
        return self._pick(path).exists(path)

    def writable(self, path: str) -> bool:
        return self._pick(path).writable(path)


def test_probe_everything_present(tmp_path, device_path):
    tsm, gramine = FakeTsm(provider="tdx_guest"), FakeGramine()
    results = real.probe(paths(tmp_path, tsm, gramine.root, device_path, files=Both(tsm, gramine)))
    assert [r.name for r in results] == ["tsm", "sev-guest", "gramine", "efi-secret"]
    assert all(r.usable for r in results[:3])
    assert [r.technology for r in results[:3]] == [4, 3, 2]
    assert "provider tdx_guest" in results[0].detail
    assert tsm.instances == {} and len(tsm.made) == 1
    both = Both(tsm, gramine)
    assert real.detect(paths(tmp_path, tsm, gramine.root, device_path, files=both)) == "tsm"


def test_probe_everything_absent(tmp_path):
    tsm, gramine = FakeTsm(present=False), FakeGramine(present=False)
    results = real.probe(paths(tmp_path, tsm, gramine.root, files=Both(tsm, gramine)))
    assert not any(r.usable for r in results)
    assert "CONFIG_TSM_REPORTS" in results[0].detail
    assert "not present" in results[1].detail
    assert "not inside Gramine" in results[2].detail
    assert real.detect(paths(tmp_path, tsm, gramine.root, files=Both(tsm, gramine))) is None


def test_probe_broken(tmp_path):
    broken_device = tmp_path / "sev-guest-dir"
    broken_device.mkdir()  # opening a directory read-write is EISDIR
    tsm, gramine = FakeTsm(provider=None), FakeGramine(attestation_type="epid")
    results = real.probe(paths(tmp_path, tsm, gramine.root, str(broken_device),
                               files=Both(tsm, gramine)))
    assert not any(r.usable for r in results)
    assert "no TSM provider" in results[0].detail
    assert "EISDIR" in results[1].detail
    assert "EPID is not supported" in results[2].detail


@pytest.mark.parametrize(
    ("fake", "expected"),
    [
        (FakeTsm(root_writable=False), "not writable"),
        (FakeTsm(provider="cca_guest"), "unsupported provider"),
    ],
)
def test_probe_tsm_unusable(fake, expected):
    result = probe_tsm(fake.root, fake)
    assert not result.usable and expected in result.detail


@pytest.mark.parametrize(
    ("fake", "expected"),
    [
        (FakeGramine(attestation_type="none"), "sgx.remote_attestation"),
        (FakeGramine(missing={"quote"}), "no quote file"),
        (FakeGramine(missing={"attestation_type"}), "ENOENT"),
    ],
)
def test_probe_gramine_unusable(fake, expected):
    result = probe_gramine(fake.root, fake)
    assert not result.usable and expected in result.detail


def test_detect_skips_unusable_backends(tmp_path, device_path):
    tsm, gramine = FakeTsm(provider=None), FakeGramine()
    both = Both(tsm, gramine)
    assert real.detect(paths(tmp_path, tsm, gramine.root, device_path, files=both)) == "sev-guest"
    assert real.detect(paths(tmp_path, tsm, gramine.root, files=Both(tsm, gramine))) == "gramine"


def test_describe_probes():
    results = [
        ProbeResult("tsm", "/sys/kernel/config/tsm/report", False, "not present"),
        ProbeResult("sev-guest", "/dev/sev-guest", True, "opens (SNP, technology 3)", 3),
        ProbeResult("gramine", "/dev/attestation", False, "not present"),
    ]
    text = real.describe_probes(results)
    assert text.splitlines() == [
        "tsm        unusable  /sys/kernel/config/tsm/report: not present",
        "sev-guest  usable    /dev/sev-guest: opens (SNP, technology 3)",
        "gramine    unusable  /dev/attestation: not present",
        "--tee auto would use: sev-guest",
    ]
    none = real.describe_probes(results[:1])
    assert none.endswith("--tee auto would use: none (no real TEE interface found)\n")


# ---------------------------------------------------------------------------- opening


def test_open_real_tsm():
    fake = FakeTsm(provider="sev_guest")
    keep = open_keep("tsm", b"", **{"tsm_root": fake.root, "files": fake, "privlevel": 1})
    with keep:
        assert keep.tee == "tsm" and keep.host is None
        assert keep.details["provider"] == "sev_guest" and keep.source.technology == 3
        assert snp.parse(keep.source.evidence(NONCE)[:1184]).vmpl == 1


def test_open_real_sev_guest(device_path):
    fake = FakeSevGuest()
    keep = open_keep("sev-guest", b"", **{"sev_guest_path": device_path,
                                             "ioctl": fake.ioctl})
    assert keep.source.technology == 3
    assert snp.parse(keep.source.evidence(NONCE)[:1184]).report_data == NONCE


def test_open_real_gramine():
    fake = FakeGramine()
    keep = open_keep("gramine", b"", **{"gramine_root": fake.root, "files": fake})
    assert keep.source.technology == 2 and keep.source.evidence_size() == fake.quote_size


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("tsm", {"files": FakeTsm(provider=None)}, "--tee tsm: .*no TSM provider"),
        ("sev-guest", {"sev_guest_path": "/nonexistent/sev-guest"}, "--tee sev-guest: .*not "
                                                                    "present"),
        ("gramine", {"files": FakeGramine(attestation_type="none")}, "--tee gramine: .*'none'"),
    ],
)
def test_open_real_unavailable(name, options, message):
    with pytest.raises(BackendUnavailable, match=message):
        open_keep(name, b"", **options)


def test_open_real_unknown_name():
    with pytest.raises(UsageError, match="unknown TEE 'sgx'"):
        open_keep("sgx", b"")


# ---------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def contract(tmp_path_factory) -> str:
    if shutil.which("gcc") is None:
        pytest.fail("gcc is required to build the native contract payload")
    exe = tmp_path_factory.mktemp("real-contract") / "contract"
    subprocess.run(["gcc", "-O2", "-Wall", "-Werror", "-o", str(exe), str(CONTRACT_C)],
                   check=True)
    return str(exe)


def test_native_payload_over_configfs_tsm(contract, capfd):
    """A C program issues the raw syscall; the supervisor answers it from configfs-tsm
    (the fake): size query, then the evidence with the program's nonce inside."""
    fake = FakeTsm(provider="sev_guest")
    status = run_native([contract, "success"], tsm_source(fake))
    out = capfd.readouterr().out
    assert status == 0, out
    fields = dict(line.partition("=")[::2] for line in out.split())
    size = 1184 + len(blobs.cert_table())
    assert int(fields["size"]) == int(fields["ret"]) == size
    assert int(fields["rdx"], 16) == Technology.SNP
    assert fields["guards"] == "ok"
    evidence = bytes.fromhex(fields["evidence"])
    assert snp.parse(evidence[:1184]).report_data == NONCE
    assert evidence[1184:] == blobs.cert_table()
    assert fake.reports == 2, "one report for the size query, one for the call"
    assert fake.instances == {} and len(fake.made) == 3, "and one instance to read provider"


def test_efi_secret_backend_reads_the_tenant_key_under_attestcalls_guid():
    from attestcall.amd.client.efi_secret import ATTESTCALL_KEY_GUID, probe_efi_secret
    from attestcall.amd.client.efi_secret import NAME as EFI_SECRET
    from tests.fakes.efi_secret import FakeEfiSecret, table

    key = b"0\x82 pkcs8 der bytes of the tenant's key"
    fake = FakeEfiSecret(table([(ATTESTCALL_KEY_GUID, key)]))
    result = probe_efi_secret(fake.root, fake)
    assert result.usable and result.technology == 1
    keep = open_keep(EFI_SECRET, b"", **{"efi_secret_root": fake.root, "files": fake})
    memory = BufferMemory(bytearray(64 + 4096))
    size = get_attestation(0, 0, 0, 0, memory=memory, source=keep.source)
    assert (size.ret, size.technology) == (len(key), 1)
    done = get_attestation(memory.base, 64, memory.base + 64, 4096, memory=memory,
                           source=keep.source)
    assert done.ret == len(key) and memory.read(memory.base + 64, len(key)) == key


def test_efi_secret_without_our_secret_is_unusable_with_a_reason():
    import uuid

    from attestcall.amd.client.efi_secret import NAME as EFI_SECRET
    from attestcall.amd.client.efi_secret import probe_efi_secret
    from tests.fakes.efi_secret import FakeEfiSecret, table

    other = FakeEfiSecret(table([(uuid.uuid4(), b"someone else's secret")]))
    assert "no attestcall secret" in probe_efi_secret(other.root, other).detail
    absent = FakeEfiSecret(b"not a secret area")
    assert "not present" in probe_efi_secret(absent.root, absent).detail
    with pytest.raises(BackendUnavailable, match="--tee efi-secret"):
        open_keep(EFI_SECRET, b"", **{"efi_secret_root": absent.root, "files": absent})
