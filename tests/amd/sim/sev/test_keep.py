"""sev-sim through the keep: the whole provisioning, the delivered key byte for byte for
every key type (through the core and through a native payload), refusals, and a host that
corrupts the secret page."""

from __future__ import annotations

import errno
import struct
import subprocess

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, mldsa, rsa

from attestcall.abi import BufferMemory, Outcome, get_attestation
from attestcall.amd.client import efi_secret
from attestcall.amd.formats import sev_cert as sc
from attestcall.amd.formats import sev_launch as sl
from attestcall.amd.sim import sev as sev_sim
from attestcall.amd.sim.sev import keep as sev
from attestcall.errors import UsageError
from attestcall.frontends.native import run_native
from attestcall.include_dir import include_dir
from attestcall.keep.platforms import open_keep
from tests import paths

PAYLOAD_C = paths.C / "sev_payload.c"
PAYLOAD = b"\x7fELF pretend payload bytes"
NONCE = bytes(range(64))

KEY_TYPES = {
    "p256": lambda: ec.generate_private_key(ec.SECP256R1()),
    "p384": lambda: ec.generate_private_key(ec.SECP384R1()),
    "ed25519": ed25519.Ed25519PrivateKey.generate,
    "rsa3072": lambda: rsa.generate_private_key(public_exponent=65537, key_size=3072),
    "mldsa65": mldsa.MLDSA65PrivateKey.generate,
}


@pytest.fixture(scope="module")
def keys() -> dict[str, object]:
    return {name: make() for name, make in KEY_TYPES.items()}


def der(key) -> bytes:
    return key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def tenant() -> sl.Tenant:
    return sl.Tenant([sev_sim.simulated_ark()])


def provisioned(key, payload: bytes = PAYLOAD):
    launch = sev.SevLaunch(payload)
    public = tenant().provision(launch, sev.expected_digest(payload), key)
    assert public is not None
    return launch.finish()


def read_through_core(source) -> tuple[Outcome, Outcome, bytes]:
    memory = BufferMemory(bytearray(b"\x5a" * 16384))
    memory.write(memory.base, NONCE)
    size = get_attestation(0, 0, 0, 0, memory=memory, source=source)
    buf = memory.base + 4096
    outcome = get_attestation(memory.base, 64, buf, 8192, memory=memory, source=source)
    return size, outcome, memory.read(buf, max(outcome.ret, 0))


# ------------------------------------------------------------------ the whole launch


@pytest.mark.parametrize("kind", sorted(KEY_TYPES))
def test_delivered_key_is_byte_identical_through_the_core(keys, kind) -> None:
    key = keys[kind]
    with provisioned(key) as keep:
        size, outcome, evidence = read_through_core(keep.source)
    assert size == Outcome(len(der(key)), 1)
    assert outcome == Outcome(len(der(key)), 1)
    assert evidence == der(key)
    loaded = serialization.load_der_private_key(evidence, None)
    assert der(loaded) == der(key)  # round-trips byte for byte


@pytest.fixture(scope="module")
def payload_exe(tmp_path_factory: pytest.TempPathFactory) -> str:
    exe = tmp_path_factory.mktemp("sev-payload") / "sev_payload"
    subprocess.run(["gcc", "-O2", "-Wall", "-Werror", "-I", str(include_dir()), "-o",
                    str(exe), str(PAYLOAD_C)], check=True, timeout=120)
    return str(exe)


@pytest.mark.parametrize("kind", sorted(KEY_TYPES))
def test_delivered_key_is_byte_identical_in_a_native_payload(keys, kind, payload_exe,
                                                            tmp_path) -> None:
    key = keys[kind]
    out = tmp_path / "key.der"
    with provisioned(key) as keep:
        assert run_native([payload_exe, "key", str(out)], keep.source) == 0
    assert out.read_bytes() == der(key)


def test_before_a_secret_native_payload_sees_eio(payload_exe) -> None:
    launch = sev.SevLaunch(PAYLOAD)
    t = tenant()
    start = t.start(launch.platform_chain())
    launch.start(start.godh_cert, start.session, start.policy)
    t.verify_measurement(launch.measurement(), launch.expected_digest)
    with launch.finish() as keep:  # finished without a secret
        assert run_native([payload_exe, "expect-eio"], keep.source) == 0
        size, outcome, _ = read_through_core(keep.source)
    assert size.ret == outcome.ret == -errno.EIO
    assert size.technology is None and outcome.technology is None


def test_open_keep_sev_sim(keys) -> None:
    with open_keep("sev-sim", PAYLOAD, key=keys["p256"], policy=1) as keep:
        assert keep.tee == "sev-sim" and keep.host is None
        _, outcome, evidence = read_through_core(keep.source)
        assert outcome.technology == 1 and evidence == der(keys["p256"])
        assert keep.details["policy"] == 1
        assert keep.details["launch_digest"] == sev.expected_digest(PAYLOAD).hex()
        public = serialization.load_pem_public_key(keep.details["public_key"].encode())
        assert public == keys["p256"].public_key()
    with open_keep("sev-sim", b"", key=der(keys["ed25519"])) as keep:
        assert keep.source.evidence(NONCE) == der(keys["ed25519"])
    with open_keep("sev-sim", PAYLOAD) as keep:  # a fresh P-384 key
        key = serialization.load_der_private_key(keep.source.evidence(NONCE), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp384r1"


@pytest.mark.parametrize("options", [{"vlek": True}, {"key": b"not a key"}, {"key": 5}])
def test_bad_options(options) -> None:
    with pytest.raises(UsageError):
        open_keep("sev-sim", PAYLOAD, **options)


def test_the_nonce_is_ignored(keys) -> None:
    with provisioned(keys["p384"]) as keep:
        assert keep.source.evidence(bytes(64)) == keep.source.evidence(b"\xff" * 64)


# ------------------------------------------------------------------ refusals


def test_a_wrong_expected_digest_sends_no_secret(keys) -> None:
    launch = sev.SevLaunch(PAYLOAD)
    with pytest.raises(sl.MeasurementMismatch):
        tenant().provision(launch, sev.expected_digest(b"another payload"), keys["p256"])
    assert launch.firmware.guest_state(launch.host.handle) is sev_sim.GuestState.LSECRET
    with launch.finish() as keep:
        with pytest.raises(sev.SecretMissing):
            keep.source.evidence_size()


def test_a_host_that_loads_another_payload_is_caught(keys) -> None:
    launch = sev.SevLaunch(b"evil payload")
    with pytest.raises(sl.MeasurementMismatch):
        tenant().provision(launch, sev.expected_digest(PAYLOAD), keys["p256"])


def test_a_tampered_session_is_refused_by_the_firmware() -> None:
    launch = sev.SevLaunch(PAYLOAD)
    start = tenant().start(launch.platform_chain())
    session = bytearray(start.session)
    session[20] ^= 1
    with pytest.raises(sev_sim.BadMeasurement):
        launch.start(start.godh_cert, bytes(session), start.policy)


def test_a_tampered_secret_packet_is_refused_by_the_firmware(keys) -> None:
    launch = sev.SevLaunch(PAYLOAD)
    t = tenant()
    start = t.start(launch.platform_chain())
    launch.start(start.godh_cert, start.session, start.policy)
    t.verify_measurement(launch.measurement(), launch.expected_digest)
    header, packet = t.key_secret(keys["p256"])
    bad = bytearray(header)
    bad[-1] ^= 1
    with pytest.raises(sev_sim.BadMeasurement):
        launch.inject_secret(bytes(bad), packet)
    launch.inject_secret(header, packet)  # the genuine one still goes in
    with launch.finish() as keep:
        assert keep.source.evidence(NONCE) == der(keys["p256"])


def test_a_secret_for_a_stale_measurement_is_refused(keys) -> None:
    launch = sev.SevLaunch(PAYLOAD)
    t = tenant()
    start = t.start(launch.platform_chain())
    launch.start(start.godh_cert, start.session, start.policy)
    t.verify_measurement(launch.measurement(), launch.expected_digest)
    launch.measurement()  # the host measures again behind the tenant's back
    with pytest.raises(sev_sim.BadMeasurement):
        launch.inject_secret(*t.key_secret(keys["p256"]))


def test_a_secret_larger_than_the_page_is_refused() -> None:
    launch = sev.SevLaunch(PAYLOAD)
    t = tenant()
    start = t.start(launch.platform_chain())
    launch.start(start.godh_cert, start.session, start.policy)
    t.verify_measurement(launch.measurement(), launch.expected_digest)
    with pytest.raises(sev_sim.InvalidLength):
        launch.inject_secret(*t.key_secret(b"k" * sev.SECRET_PAGE_SIZE))


def test_provisioning_calls_out_of_order_are_refused(keys) -> None:
    launch = sev.SevLaunch(PAYLOAD)
    with pytest.raises(sev.LaunchOrderError):
        launch.measurement()
    with pytest.raises(sev.LaunchOrderError):
        launch.inject_secret(bytes(0x34), bytes(16))
    with pytest.raises(sev.LaunchOrderError):
        launch.finish()
    t = tenant()
    start = t.start(launch.platform_chain())
    launch.start(start.godh_cert, start.session, start.policy)
    with pytest.raises(sev.LaunchOrderError):
        launch.start(start.godh_cert, start.session, start.policy)
    with pytest.raises(sev_sim.InvalidGuestState):
        launch.finish()  # not measured
    with pytest.raises(sev_sim.InvalidGuestState):
        launch.inject_secret(bytes(0x34), bytes(16))
    t.verify_measurement(launch.measurement(), launch.expected_digest)
    launch.inject_secret(*t.key_secret(keys["p256"]))
    launch.finish().close()
    with pytest.raises(sev.LaunchOrderError):
        launch.finish()
    with pytest.raises(sev_sim.InvalidGuestState):
        launch.inject_secret(*t.key_secret(keys["p256"]))


def test_measurement_report_goes_over_the_wire(keys) -> None:
    """The provisioning calls carry only bytes: a proxy that packs and parses works."""

    class Wire:
        def __init__(self, launch: sev.SevLaunch):
            self.launch = launch

        def platform_chain(self) -> bytes:
            return bytes(self.launch.platform_chain())

        def start(self, godh_cert: bytes, session: bytes, policy: int) -> None:
            self.launch.start(bytes(godh_cert), bytes(session), policy)

        def measurement(self) -> sl.MeasurementReport:
            return sl.MeasurementReport.parse(self.launch.measurement().pack())

        def inject_secret(self, header: bytes, packet: bytes) -> None:
            self.launch.inject_secret(bytes(header), bytes(packet))

    launch = sev.SevLaunch(PAYLOAD)
    tenant().provision(Wire(launch), sev.expected_digest(PAYLOAD), keys["rsa3072"])
    with launch.finish() as keep:
        assert keep.source.evidence(NONCE) == der(keys["rsa3072"])


def test_the_shim_image_names_the_secret_page() -> None:
    image = sev.shim_image()
    assert len(image) == sev.SHIM_IMAGE_SIZE
    assert struct.unpack_from("<16sIIQQ", image) == (sev.SHIM_MAGIC, 1, 0, sev.SECRET_PADDR,
                                                     sev.SECRET_PAGE_SIZE)
    assert sev.expected_digest(PAYLOAD) == sl.launch_digest(image, PAYLOAD + bytes(6))
    chain = sc.PlatformChain.parse(sev.SevLaunch(b"").platform_chain())
    assert chain.pdh.api_minor == sev_sim.load_state().api_minor


# ------------------------------------------------------------------ a hostile host


def corrupt(keep, data: bytes, offset: int = 0) -> None:
    keep.source.memory.write(sev.SECRET_PADDR + offset, data)


@pytest.mark.parametrize("name, damage", [
    ("length beyond the page", lambda k: corrupt(k, struct.pack("<I", 0x1001), 16)),
    ("entry beyond the table", lambda k: corrupt(k, struct.pack("<I", 0x0FFF), 36)),
    ("header GUID", lambda k: corrupt(k, b"\0", 3)),
    ("entry GUID", lambda k: corrupt(k, b"\x01", 20)),
    ("wiped page", lambda k: corrupt(k, bytes(sev.SECRET_PAGE_SIZE))),
])
def test_a_corrupted_secret_page_is_eio_and_nothing_is_copied(keys, name, damage) -> None:
    with provisioned(keys["p256"]) as keep:
        damage(keep)
        memory = BufferMemory(bytearray(b"\x5a" * 16384))
        memory.write(memory.base, NONCE)
        before = bytes(memory.data)
        assert get_attestation(0, 0, 0, 0, memory=memory, source=keep.source).ret == -errno.EIO
        outcome = get_attestation(memory.base, 64, memory.base + 4096, 8192, memory=memory,
                                  source=keep.source)
        assert outcome == Outcome(-errno.EIO, None)
        assert bytes(memory.data) == before


def test_a_page_entry_length_is_checked_against_the_page(keys) -> None:
    """A table that claims more than the page holds is refused, whatever lies behind the
    page in guest memory."""
    with provisioned(keys["p256"]) as keep:
        raw = efi_secret.build_table({efi_secret.ATTESTCALL_KEY_GUID: b"k" * 5000})
        keep.source.memory.write(sev.SECRET_PADDR, raw[: sev.SECRET_PAGE_SIZE])
        with pytest.raises(sev.SecretMissing, match="exceeds"):
            keep.source.evidence_size()
