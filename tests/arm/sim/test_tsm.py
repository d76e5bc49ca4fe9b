"""configfs-tsm with the arm_cca_guest provider (Linux 6.13's arm-cca-guest driver): the
fake's attribute set and behaviour, the tsm keep answering technology 5 with the RMM's
token, and ``attestcall devices`` naming it."""

from __future__ import annotations

import errno

import pytest

from attestcall.abi import BufferMemory, get_attestation
from attestcall.arm.formats import token as fmt
from attestcall.keep import real
from attestcall.keep.platforms import open_keep
from attestcall.linux.tsm import TsmClient, TsmError, TsmSource, probe_tsm
from tests.fakes.configfs_tsm import CCA_ATTRS, ROOT, FakeTsm

NONCE = bytes(range(0x40, 0x80))
BASE = 0x10000


def fake_instance() -> FakeTsm:
    fake = FakeTsm(provider="arm_cca_guest")
    fake.mkdir(f"{ROOT}/r")
    return fake


def test_every_attribute_is_visible():
    """arm-cca-guest registers no visibility callbacks, so tsm.c shows every attribute."""
    fake = fake_instance()
    assert all(fake.exists(f"{ROOT}/r/{name}") for name in CCA_ATTRS)
    assert {"service_provider", "manifestblob", "privlevel", "auxblob"} <= set(CCA_ATTRS)
    assert fake.read(f"{ROOT}/r/provider") == b"arm_cca_guest\n"


def test_a_short_challenge_is_zero_padded_and_too_short_is_einval():
    fake = fake_instance()
    fake.write(f"{ROOT}/r/inblob", NONCE[:32])
    token = fake.read(f"{ROOT}/r/outblob")
    assert fmt.decode(token).realm_claims.challenge == NONCE[:32] + bytes(32)
    fake.write(f"{ROOT}/r/inblob", NONCE[:31])
    with pytest.raises(OSError) as info:
        fake.read(f"{ROOT}/r/outblob")
    assert info.value.errno == errno.EINVAL


def test_privlevel_is_taken_and_ignored_auxblob_and_manifestblob_are_empty():
    fake = fake_instance()
    fake.write(f"{ROOT}/r/privlevel", b"2\n")
    fake.write(f"{ROOT}/r/inblob", NONCE)
    assert fake.read(f"{ROOT}/r/generation") == b"2\n"
    assert fmt.decode(fake.read(f"{ROOT}/r/outblob")).realm_claims.challenge == NONCE
    assert fake.read(f"{ROOT}/r/auxblob") == fake.read(f"{ROOT}/r/manifestblob") == b""


def test_the_report_is_the_token_technology_5():
    fake = FakeTsm(provider="arm_cca_guest")
    report = TsmClient(fake.root, files=fake).report(NONCE)
    assert report.provider == "arm_cca_guest" and report.technology == 5
    assert report.auxblob == b"" and report.evidence == report.outblob
    assert fmt.decode(report.evidence).realm_claims.challenge == NONCE
    assert fake.instances == {} and sorted(fake.made) == sorted(fake.removed)


def test_a_privlevel_is_refused_for_arm_cca_guest():
    """The driver ignores privlevel: asking for one is refused rather than silently lost."""
    fake = FakeTsm(provider="arm_cca_guest")
    with pytest.raises(TsmError, match="no privlevel"):
        TsmClient(fake.root, files=fake, privlevel=1).report(NONCE)


def test_through_the_core():
    fake = FakeTsm(provider="arm_cca_guest")
    source = TsmSource(TsmClient(fake.root, files=fake))
    assert source.technology == 5
    size_q = get_attestation(0, 0, 0, 0, memory=BufferMemory(bytearray(1)), source=source)
    memory = BufferMemory(bytearray(NONCE + bytes(size_q.ret)), base=BASE)
    outcome = get_attestation(BASE, 64, BASE + 64, size_q.ret, memory=memory, source=source)
    assert size_q.technology == outcome.technology == 5
    assert outcome.ret == size_q.ret
    assert fmt.decode(bytes(memory.data[64:])).realm_claims.challenge == NONCE


def test_open_keep_tsm_answers_cca():
    fake = FakeTsm(provider="arm_cca_guest")
    with open_keep("tsm", b"", tsm_root=fake.root, files=fake) as keep:
        assert keep.details["provider"] == "arm_cca_guest" and keep.source.technology == 5
        assert fmt.realm_challenge(keep.source.evidence(NONCE)) == NONCE


def test_devices_names_the_provider(tmp_path):
    fake = FakeTsm(provider="arm_cca_guest")
    probe = probe_tsm(fake.root, fake)
    assert probe.usable and probe.technology == 5
    assert probe.detail == "provider arm_cca_guest (CCA, technology 5)"
    options = {"tsm_root": fake.root, "files": fake,
               "sev_guest_path": str(tmp_path / "none"), "gramine_root": str(tmp_path / "none"),
               "efi_secret_root": str(tmp_path / "none")}
    text = real.describe_probes(real.probe(options))
    assert text.splitlines()[0].split() == [
        "tsm", "usable", f"{ROOT}:", "provider", "arm_cca_guest", "(CCA,", "technology", "5)"]
    assert text.endswith("--tee auto would use: tsm\n")
