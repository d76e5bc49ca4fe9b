"""The tenant's side of the SEV launch: known-answer vectors (with provenance), formats,
the session and secret crypto, and the Tenant's refusals."""

from __future__ import annotations

import json
import os

import pytest
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.kbkdf import KBKDFHMAC, CounterLocation, Mode
from hypothesis import given
from hypothesis import strategies as st

from attestcall.amd.client import efi_secret
from attestcall.amd.formats import sev_cert as sc
from attestcall.amd.formats import sev_launch as sl
from attestcall.amd.sim import sev as sev_sim
from tests import paths

VECTORS = json.loads((paths.DATA / "amd" /
                      "sev_launch_vectors.json").read_text())


def h(text: str) -> bytes:
    return bytes.fromhex(text)


# ------------------------------------------------------------------ known answers


def test_amd_measurement_vector() -> None:
    """AMD's own known answer (sev-tool's test_calc_measurement)."""
    v = VECTORS["measurement"]
    measure = sl.measurement_mac(h(v["tik"]), v["api_major"], v["api_minor"], v["build"],
                                 v["policy"], h(v["digest"]), h(v["mnonce"]))
    assert measure == h(v["measure"])
    assert h(v["digest"]) == sl.launch_digest()  # the digest of nothing loaded


def test_kdf_vector() -> None:
    v = VECTORS["kdf_master_secret"]
    assert sl.kdf(h(v["key"]), v["label"].encode(), h(v["context"])) == h(v["output"])


def test_session_vector() -> None:
    v = VECTORS["session"]
    session = sl.wrap_session(h(v["z"]), h(v["tek"]), h(v["tik"]), v["policy"], h(v["nonce"]),
                              h(v["iv"]))
    assert (session.wrap_tk, session.wrap_mac, session.policy_mac) == \
        (h(v["wrap_tk"]), h(v["wrap_mac"]), h(v["policy_mac"]))
    assert sl.open_session(h(v["z"]), session, v["policy"]) == (h(v["tek"]), h(v["tik"]))


def test_kdf_is_sp800_108_with_little_endian_fields() -> None:
    """One block of AMD's KDF equals cryptography's KBKDFHMAC given the little-endian
    counter and length as a fixed prefix and suffix (KBKDFHMAC itself encodes them
    big-endian, which gives a different key)."""
    key, label, context = os.urandom(48), b"sev-master-secret", os.urandom(16)
    fixed = b"\x00\x00\x00" + label + b"\x00" + context + (128).to_bytes(4, "little")
    reference = KBKDFHMAC(hashes.SHA256(), Mode.CounterMode, 16, 1, None,
                          CounterLocation.BeforeFixed, None, None, fixed).derive(key)
    assert sl.kdf(key, label, context) == reference
    big_endian = KBKDFHMAC(hashes.SHA256(), Mode.CounterMode, 16, 4, 4,
                           CounterLocation.BeforeFixed, label, context, None).derive(key)
    assert sl.kdf(key, label, context) != big_endian


@given(st.binary(min_size=1, max_size=64), st.integers(1, 100))
def test_kdf_long_outputs_chain_blocks(key: bytes, length: int) -> None:
    out = sl.kdf(key, b"label", b"ctx", length)
    assert len(out) == length
    first = hmac.HMAC(key, hashes.SHA256())
    first.update((1).to_bytes(4, "little") + b"label\x00ctx" + (length * 8).to_bytes(4, "little"))
    assert out[:32] == first.finalize()[: min(32, length)]


# ------------------------------------------------------------------ formats


def test_formats_roundtrip_and_sizes() -> None:
    session = sl.Session(*(os.urandom(n) for n in (16, 32, 16, 32, 32)))
    assert len(session.pack()) == 0x80 and sl.Session.parse(session.pack()) == session
    header = sl.PacketHeader(0, os.urandom(16), os.urandom(32))
    assert len(header.pack()) == 0x34 and sl.PacketHeader.parse(header.pack()) == header
    report = sl.MeasurementReport(os.urandom(32), os.urandom(16), 0, 24, 15, 3)
    assert len(report.pack()) == 56 and sl.MeasurementReport.parse(report.pack()) == report
    for parse, size in ((sl.Session.parse, 0x80), (sl.PacketHeader.parse, 0x34),
                        (sl.MeasurementReport.parse, 56)):
        with pytest.raises(sl.LaunchError):
            parse(bytes(size - 1))


def test_session_tampering_is_detected() -> None:
    z, tek, tik = os.urandom(48), os.urandom(16), os.urandom(16)
    session = sl.wrap_session(z, tek, tik, 3, os.urandom(16), os.urandom(16))
    for field in ("nonce", "wrap_tk", "wrap_iv", "wrap_mac", "policy_mac"):
        value = bytearray(getattr(session, field))
        value[0] ^= 1
        tampered = sl.Session(**{**session.__dict__, field: bytes(value)})
        with pytest.raises(sl.MacMismatch):
            sl.open_session(z, tampered, 3)
    with pytest.raises(sl.MacMismatch, match="POLICY"):
        sl.open_session(z, session, 1)
    with pytest.raises(sl.MacMismatch):
        sl.open_session(os.urandom(48), session, 3)


def test_secret_seal_and_open() -> None:
    tek, tik, measure = os.urandom(16), os.urandom(16), os.urandom(32)
    data = os.urandom(64)
    header, packet = sl.seal_secret(tek, tik, measure, data)
    assert packet != data and len(packet) == len(data)
    assert sl.open_secret(tek, tik, measure, header, packet) == data
    with pytest.raises(sl.MacMismatch):
        sl.open_secret(tek, tik, os.urandom(32), header, packet)  # another measurement
    with pytest.raises(sl.MacMismatch):
        sl.open_secret(tek, tik, measure, header, packet[:-1] + bytes([packet[-1] ^ 1]))
    with pytest.raises(sl.MacMismatch):
        sl.open_secret(tek, tik, measure, sl.PacketHeader(0, os.urandom(16), header.mac),
                       packet)
    with pytest.raises(sl.LaunchError, match="compressed"):
        sl.open_secret(tek, tik, measure, sl.PacketHeader(1, header.iv, header.mac), packet)
    with pytest.raises(sl.LaunchError, match="multiple of 16"):
        sl.seal_secret(tek, tik, measure, b"x" * 17)


def test_key_table_is_an_efi_secret_table() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    table = sl.key_table(key)
    assert len(table) % 16 == 0
    assert efi_secret.parse_table(table) == {efi_secret.ATTESTCALL_KEY_GUID: sl.pkcs8(key)}


# ------------------------------------------------------------------ the tenant


@pytest.fixture
def platform():
    state = sev_sim.load_state()
    return state, sev_sim.SimulatedSevFirmware(state)


def test_tenant_refuses_an_untrusted_chain(platform) -> None:
    state, firmware = platform
    tenant = sl.Tenant([])
    with pytest.raises(sc.ChainInvalid):
        tenant.start(firmware.pdh_cert_export())
    with pytest.raises(sl.NotVerified):
        tenant.secret(bytes(16))


def test_tenant_session_opens_in_the_firmware_and_checks_the_measurement(platform) -> None:
    state, firmware = platform
    tenant = sl.Tenant([state.chain.ark.pack()], policy=0x1)
    start = tenant.start(firmware.pdh_cert_export())
    godh = sc.SevCertificate.parse(start.godh_cert)
    assert (godh.usage, godh.algo) == (sc.USAGE_PDH, sc.ALGO_ECDH_SHA256)
    handle = firmware.launch_start(start.policy, start.godh_cert, start.session)
    memory = sev_sim.GuestMemory(64)
    memory.write(0, b"A" * 64)
    firmware.launch_update_data(handle, memory, 0, 64)
    raw = firmware.launch_measure(handle)
    report = sl.MeasurementReport(raw[:32], raw[32:], *firmware.platform_status(), 0x1)
    with pytest.raises(sl.NotVerified):
        tenant.secret(bytes(16))
    with pytest.raises(sl.MeasurementMismatch):
        tenant.verify_measurement(report, sl.launch_digest(b"B" * 64))
    with pytest.raises(sl.NotVerified):  # still refuses after a mismatch
        tenant.secret(bytes(16))
    with pytest.raises(sl.MeasurementMismatch, match="policy"):
        tenant.verify_measurement(sl.MeasurementReport(raw[:32], raw[32:],
                                                       *firmware.platform_status(), 0),
                                  sl.launch_digest(b"A" * 64))
    tenant.verify_measurement(report, sl.launch_digest(b"A" * 64))
    header, packet = tenant.secret(b"s" * 32)
    firmware.launch_secret(handle, header, packet, memory, 0, 64)
    assert memory.read(0, 32) == b"s" * 32


def test_start_before_anything_else() -> None:
    with pytest.raises(sl.NotVerified):
        sl.Tenant([]).verify_measurement(
            sl.MeasurementReport(bytes(32), bytes(16), 0, 0, 0, sl.DEFAULT_POLICY), bytes(32))
