import dataclasses
import datetime as dt
import hashlib

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import cmac, hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.x509.verification import ExtensionPolicy, PolicyBuilder, Store

from attestcall.intel.formats.pck import SGX_EXTENSION_OID, PckExtension
from attestcall.intel.formats.quote import (
    CERT_PCK_CHAIN,
    INTEL_QE_VENDOR_ID,
    Quote,
    public_key_from_raw,
    public_key_to_raw,
    signature_to_der,
)
from attestcall.intel.formats.structs import ATTR_DEBUG, Report, ReportBody, TargetInfo
from attestcall.intel.sim.sgx import (
    EnclaveIdentity,
    EreportError,
    QuotingEnclave,
    ReportRejected,
    SgxState,
    SimulatedCpu,
    load_state,
    measure_payload,
)
from tests import paths

DATA = paths.DATA / "intel"
NONCE = hashlib.sha512(b"nonce").digest()


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> SgxState:
    return load_state(tmp_path_factory.getbasetemp() / "attestcall-home")


@pytest.fixture(scope="module")
def cpu(state: SgxState) -> SimulatedCpu:
    return SimulatedCpu(state)


@pytest.fixture(scope="module")
def qe(state: SgxState) -> QuotingEnclave:
    return QuotingEnclave(state)


@pytest.fixture(scope="module")
def identity(state: SgxState) -> EnclaveIdentity:
    return EnclaveIdentity.for_payload(b"payload one", state)


@pytest.fixture(scope="module")
def quote_bytes(cpu: SimulatedCpu, qe: QuotingEnclave, identity: EnclaveIdentity) -> bytes:
    return qe.quote(cpu.ereport(qe.target_info(), NONCE, identity))


@pytest.fixture(scope="module")
def quote(quote_bytes: bytes) -> Quote:
    return Quote.parse(quote_bytes)


def ecdsa_verify(key: ec.EllipticCurvePublicKey, raw_signature: bytes, data: bytes) -> None:
    key.verify(signature_to_der(raw_signature), data, ec.ECDSA(hashes.SHA256()))


def chain(quote: Quote) -> list[x509.Certificate]:
    return [x509.load_pem_x509_certificate(p) for p in quote.certification_data.pem_certificates()]


def real_chain() -> list[x509.Certificate]:
    return chain(Quote.parse((DATA / "sgx_quote_v3.bin").read_bytes()))


# ----------------------------------------------------------------------------- the quote


def test_quote_parses_strictly_and_round_trips(quote_bytes: bytes, quote: Quote) -> None:
    assert quote.pack() == quote_bytes


def test_report_data_is_the_nonce(quote: Quote) -> None:
    assert quote.body.report_data == NONCE


def test_body_carries_the_enclave_identity(
    quote: Quote, identity: EnclaveIdentity, state: SgxState
) -> None:
    assert quote.body.mr_enclave == identity.mrenclave == measure_payload(b"payload one")
    assert quote.body.mr_signer == state.enclave_signer_mrsigner
    assert quote.body.cpu_svn == state.pck_extension.tcb.cpu_svn


def test_header(quote: Quote, state: SgxState) -> None:
    header = quote.header
    assert (header.version, header.att_key_type, header.tee_type) == (3, 2, 0)
    assert header.qe_vendor_id == INTEL_QE_VENDOR_ID
    assert (header.qe_svn, header.pce_svn) == (state.qe_svn, state.pce_svn)
    assert header.user_data == state.qe_id + bytes(4)


def test_size_is_announced_exactly(
    cpu: SimulatedCpu, qe: QuotingEnclave, identity: EnclaveIdentity, quote_bytes: bytes
) -> None:
    assert len(quote_bytes) == qe.quote_size()
    for nonce in (bytes(64), b"\xff" * 64, bytes(range(64))):
        assert len(qe.quote(cpu.ereport(qe.target_info(), nonce, identity))) == qe.quote_size()


def test_quote_signature_verifies_with_embedded_attestation_key(
    quote: Quote, state: SgxState
) -> None:
    key = public_key_from_raw(quote.signature_data.attestation_key)
    assert public_key_to_raw(state.attestation_key.public_key()) == (
        quote.signature_data.attestation_key
    )
    ecdsa_verify(key, quote.signature_data.signature, quote.signed_bytes())
    altered = bytearray(quote.signed_bytes())
    altered[-1] ^= 1
    with pytest.raises(InvalidSignature):
        ecdsa_verify(key, quote.signature_data.signature, bytes(altered))


def test_qe_report_signature_verifies_with_pck_key(quote: Quote) -> None:
    leaf = chain(quote)[0]
    key = leaf.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    qe = quote.signature_data.qe
    ecdsa_verify(key, qe.qe_report_signature, qe.qe_report.pack())


def test_qe_report_binds_the_attestation_key(quote: Quote, state: SgxState) -> None:
    qe = quote.signature_data.qe
    assert qe.qe_auth_data == bytes(range(32))
    digest = hashlib.sha256(quote.signature_data.attestation_key + qe.qe_auth_data).digest()
    assert qe.qe_report.report_data == digest + bytes(32)
    assert qe.qe_report.mr_enclave == state.qe_identity.mrenclave
    assert qe.qe_report.mr_signer == state.qe_identity.mrsigner
    assert qe.qe_report.isv_prod_id == 1
    assert qe.qe_report.attribute_flags == 0x15
    assert not qe.qe_report.debug


def test_chain_verifies_to_the_simulated_root(quote: Quote, state: SgxState) -> None:
    leaf, platform_ca, root = chain(quote)
    assert root == state.root_cert
    leaf.verify_directly_issued_by(platform_ca)
    platform_ca.verify_directly_issued_by(root)
    root.verify_directly_issued_by(root)
    verifier = (
        PolicyBuilder()
        .store(Store([state.root_cert]))
        .time(dt.datetime.now(dt.UTC))
        .extension_policies(
            ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=ExtensionPolicy.permit_all()
        )
        .build_client_verifier()
    )
    built = verifier.verify(leaf, [platform_ca])
    assert built.chain == [leaf, platform_ca, root]


def test_chain_does_not_verify_to_the_real_intel_root(quote: Quote) -> None:
    leaf, platform_ca, _ = chain(quote)
    intel_root = real_chain()[2]
    with pytest.raises((ValueError, InvalidSignature)):
        platform_ca.verify_directly_issued_by(intel_root)


def test_certification_data_is_shaped_like_the_real_one(quote: Quote, state: SgxState) -> None:
    data = quote.certification_data
    assert data.cert_type == CERT_PCK_CHAIN
    assert data.data.endswith(b"-----END CERTIFICATE-----\n\x00")
    assert data.data.count(b"-----BEGIN CERTIFICATE-----") == 3
    assert chain(quote) == [state.pck_cert, state.platform_ca_cert, state.root_cert]


def test_certificates_mirror_intel_extensions_and_subjects(quote: Quote) -> None:
    for simulated, real in zip(chain(quote), real_chain(), strict=True):
        assert [e.oid for e in simulated.extensions] == [e.oid for e in real.extensions]
        assert [e.critical for e in simulated.extensions] == [e.critical for e in real.extensions]
        for ext_type in (x509.KeyUsage, x509.BasicConstraints):
            assert simulated.extensions.get_extension_for_class(ext_type).value == (
                real.extensions.get_extension_for_class(ext_type).value
            )
        assert "SIMULATED" in simulated.subject.rfc4514_string()
        sim_attrs = [(a.oid, a.value) for a in simulated.subject]
        real_attrs = [(a.oid, a.value) for a in real.subject]
        assert [oid for oid, _ in sim_attrs] == [oid for oid, _ in real_attrs]
        assert sim_attrs[1:] == real_attrs[1:]  # O, L, ST, C as Intel's
        assert sim_attrs[0][1].startswith(real_attrs[0][1].replace("Processor", "Platform"))
        assert isinstance(simulated.public_key(), ec.EllipticCurvePublicKey)
        assert isinstance(simulated.signature_hash_algorithm, hashes.SHA256)


def test_pck_extension_matches_the_state(state: SgxState) -> None:
    ext = PckExtension.from_certificate(state.pck_cert)
    assert ext == state.pck_extension
    assert ext.pce_id == b"\x00\x00"
    assert len(ext.fmspc) == 6 and len(ext.ppid) == 16
    assert state.pck_cert.extensions.get_extension_for_oid(
        x509.ObjectIdentifier(SGX_EXTENSION_OID)
    ).critical is False


# ----------------------------------------------------------------------- EREPORT and MAC


def test_report_mac_is_aes_cmac_under_the_targets_report_key(
    cpu: SimulatedCpu, qe: QuotingEnclave, identity: EnclaveIdentity
) -> None:
    raw = cpu.ereport(qe.target_info(), NONCE, identity)
    report = Report.unpack(raw)
    key = cpu.report_key(TargetInfo.unpack(qe.target_info()), report.key_id)
    mac = cmac.CMAC(algorithms.AES128(key))
    mac.update(raw[:384])
    assert mac.finalize() == report.mac
    assert report.key_id == cpu.key_id


def test_forged_mac_is_rejected(cpu: SimulatedCpu, qe: QuotingEnclave, identity) -> None:
    raw = bytearray(cpu.ereport(qe.target_info(), NONCE, identity))
    raw[-1] ^= 0x01
    with pytest.raises(ReportRejected, match="MAC"):
        qe.quote(bytes(raw))


@pytest.mark.parametrize("offset", [0, 64, 128, 256, 320, 383, 384, 415])
def test_altered_report_is_rejected(
    cpu: SimulatedCpu, qe: QuotingEnclave, identity: EnclaveIdentity, offset: int
) -> None:
    raw = bytearray(cpu.ereport(qe.target_info(), NONCE, identity))
    raw[offset] ^= 0x01
    with pytest.raises(ReportRejected):
        qe.quote(bytes(raw))


@pytest.mark.parametrize("size", [0, 384, 431, 433])
def test_wrong_size_report_is_rejected(qe: QuotingEnclave, size: int) -> None:
    with pytest.raises(ReportRejected, match="malformed"):
        qe.quote(bytes(size))


def test_report_for_another_target_is_rejected(
    cpu: SimulatedCpu, qe: QuotingEnclave, identity: EnclaveIdentity
) -> None:
    other = identity.target_info().pack()
    with pytest.raises(ReportRejected):
        qe.quote(cpu.ereport(other, NONCE, identity))
    # Same MRENCLAVE as the QE but other attributes: still another target.
    qe_target = TargetInfo.unpack(qe.target_info())
    twisted = TargetInfo(qe_target.mr_enclave, bytes(16)).pack()
    with pytest.raises(ReportRejected):
        qe.quote(cpu.ereport(twisted, NONCE, identity))


def test_report_from_another_cpu_is_rejected(
    state: SgxState, qe: QuotingEnclave, identity: EnclaveIdentity
) -> None:
    other_state = dataclasses.replace(state, cpu_secret=bytes(32))
    other_cpu = SimulatedCpu(other_state)
    with pytest.raises(ReportRejected):
        qe.quote(other_cpu.ereport(qe.target_info(), NONCE, identity))


def test_a_new_cpu_boot_still_quotes(state: SgxState, qe: QuotingEnclave, identity) -> None:
    rebooted = SimulatedCpu(state)  # new KEYID
    report = rebooted.ereport(qe.target_info(), NONCE, identity)
    assert Quote.parse(qe.quote(report)).body.report_data == NONCE


@pytest.mark.parametrize("size", [0, 32, 63, 65])
def test_reportdata_must_be_64_bytes(
    cpu: SimulatedCpu, qe: QuotingEnclave, identity: EnclaveIdentity, size: int
) -> None:
    with pytest.raises(EreportError, match="REPORTDATA"):
        cpu.ereport(qe.target_info(), bytes(size), identity)


@pytest.mark.parametrize("size", [0, 511, 513])
def test_targetinfo_must_be_512_bytes(
    cpu: SimulatedCpu, qe: QuotingEnclave, identity: EnclaveIdentity, size: int
) -> None:
    with pytest.raises(EreportError, match="TARGETINFO"):
        cpu.ereport(qe.target_info()[:size].ljust(size, b"\x00"), NONCE, identity)


def test_targetinfo_with_reserved_bits_is_refused(
    cpu: SimulatedCpu, qe: QuotingEnclave, identity: EnclaveIdentity
) -> None:
    target = bytearray(qe.target_info())
    target[200] = 1
    with pytest.raises(EreportError, match="reserved"):
        cpu.ereport(bytes(target), NONCE, identity)


# ---------------------------------------------------------------------- enclave identity


def test_two_payloads_give_two_mrenclaves(state: SgxState) -> None:
    one = EnclaveIdentity.for_payload(b"payload one", state)
    two = EnclaveIdentity.for_payload(b"payload two", state)
    assert one.mrenclave != two.mrenclave
    assert one.mrsigner == two.mrsigner == state.enclave_signer_mrsigner
    assert EnclaveIdentity.for_payload(b"payload one", state) == one


def test_mrsigner_is_sha256_of_the_little_endian_modulus(state: SgxState) -> None:
    public = state.enclave_signer_key.public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    assert public.key_size == 3072 and public.public_numbers().e == 3
    modulus = public.public_numbers().n.to_bytes(384, "little")
    assert state.enclave_signer_mrsigner == hashlib.sha256(modulus).digest()


def test_debug_is_off_by_default(quote: Quote, identity: EnclaveIdentity) -> None:
    assert not identity.debug
    assert not quote.body.debug
    assert quote.body.attributes == bytes.fromhex("0500000000000000e700000000000000")


def test_overrides(state: SgxState, cpu: SimulatedCpu, qe: QuotingEnclave) -> None:
    custom = EnclaveIdentity.for_payload(
        b"x", state, mrenclave=b"\x01" * 32, isv_svn=7, isv_prod_id=None, debug=True
    )
    assert custom.mrenclave == b"\x01" * 32
    assert custom.isv_svn == 7 and custom.isv_prod_id == 0
    assert custom.debug and custom.attribute_flags == 0x05 | ATTR_DEBUG
    body = Quote.parse(qe.quote(cpu.ereport(qe.target_info(), NONCE, custom))).body
    assert body.debug and body.mr_enclave == b"\x01" * 32 and body.isv_svn == 7
    assert not EnclaveIdentity.for_payload(b"x", state, debug=False).debug
    with pytest.raises(TypeError):
        EnclaveIdentity.for_payload(b"x", state, no_such_field=1)
    with pytest.raises(ValueError):
        EnclaveIdentity.for_payload(b"x", state, mrsigner=b"short")


def test_replace_with_cli_style_overrides(identity: EnclaveIdentity) -> None:
    same = identity.replace(mrenclave=None, mrsigner=None, isv_prod_id=None, isv_svn=None,
                            debug=None)  # fmt: skip
    assert same == identity
    changed = identity.replace(mrsigner=b"\x02" * 32, isv_prod_id=3, debug=True)
    assert changed.mrsigner == b"\x02" * 32 and changed.isv_prod_id == 3 and changed.debug
    assert changed.mrenclave == identity.mrenclave
    assert not changed.replace(debug=False).debug
    with pytest.raises(ValueError):
        identity.replace(isv_svn=0x10000)


def test_report_body_of_identity(identity: EnclaveIdentity) -> None:
    body = identity.report_body(bytes(16), NONCE)
    assert isinstance(body, ReportBody)
    assert body.mr_enclave == identity.mrenclave and body.report_data == NONCE


# --------------------------------------------------------------------------- the state


def test_state_is_cached(state: SgxState, tmp_path_factory: pytest.TempPathFactory) -> None:
    assert load_state(tmp_path_factory.getbasetemp() / "attestcall-home") is state


def test_state_subjects_say_simulated(state: SgxState) -> None:
    for cert in (state.root_cert, state.platform_ca_cert, state.pck_cert, state.tcb_signing_cert):
        assert "SIMULATED" in cert.subject.rfc4514_string()
    state.tcb_signing_cert.verify_directly_issued_by(state.root_cert)
