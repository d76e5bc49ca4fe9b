"""The keep's identity: key, nonce binding, certificate extensions, and reading them back."""

import hashlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from attestcall import abi, der
from attestcall.amd.formats import certs as amdcerts
from attestcall.deploy.cmw import CMW_EXTENSION_OID, parse_extension_value
from attestcall.deploy.identity import (
    BindingError,
    CertificateEvidenceError,
    KeepAttestationFailed,
    attest,
    build_certificate,
    check_binding,
    evidence_from_certificate,
    make_identity,
)
from attestcall.deploy.keys import (
    KEY_TYPES,
    UnsupportedKeyType,
    binding_nonce,
    generate_key,
    spki_der,
)
from attestcall.keep.platforms import open_keep

TEES = {"none": 0, "sgx-sim": 2, "snp-sim": 3, "tdx-sim": 4, "cca-sim": 5}
MEDIA_TYPES = {
    0: "application/vnd.attestcall.evidence.none",
    2: "application/vnd.attestcall.evidence.sgx-dcap-quote",
    3: "application/vnd.attestcall.evidence.snp-report",
    4: "application/vnd.attestcall.evidence.tdx-dcap-quote",
    5: 'application/eat-collection; profile="http://arm.com/CCA-SSD/1.0.0"',
}
ENARX_OIDS = {0: "1.3.6.1.4.1.58270.1.1", 2: "1.3.6.1.4.1.58270.1.2",
              3: "1.3.6.1.4.1.58270.1.3"}  # Enarx's: none ("KVM"), SGX, SNP; none for TDX


@pytest.fixture(scope="module")
def identities(tmp_path_factory):
    home = tmp_path_factory.getbasetemp() / "attestcall-home"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ATTESTCALL_HOME", str(home))
        out = {}
        for tee in TEES:
            with open_keep(tee, b"") as keep:
                out[tee] = make_identity(keep.source)
        yield out


def test_nonce_is_the_spki_hash_zero_padded():
    key = generate_key("p256").public_key()
    assert binding_nonce(key) == hashlib.sha256(spki_der(key)).digest() + bytes(32)
    key = generate_key("p384").public_key()
    assert binding_nonce(key) == hashlib.sha384(spki_der(key)).digest() + bytes(16)
    for key_type in ("ed25519", "rsa3072"):
        assert len(binding_nonce(generate_key(key_type).public_key())) == 64


def test_mldsa_nonces_are_the_whole_sha512_of_the_spki():
    for key_type in ("mldsa44", "mldsa65", "mldsa87"):
        assert key_type in KEY_TYPES
        key = generate_key(key_type).public_key()
        assert binding_nonce(key) == hashlib.sha512(spki_der(key)).digest()  # no padding


def test_unknown_key_types_are_refused():
    with pytest.raises(UnsupportedKeyType, match="unknown key type"):
        generate_key("p521")


@pytest.mark.parametrize("tee, technology", TEES.items())
def test_certificate_carries_the_evidence(identities, tee, technology):
    identity = identities[tee]
    cert = identity.certificate
    assert identity.technology == technology
    extension = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(CMW_EXTENSION_OID))
    assert not extension.critical
    record = parse_extension_value(extension.value.value)
    assert record.media_type == MEDIA_TYPES[technology]
    assert record.value == identity.evidence and record.indicator == 4
    assert evidence_from_certificate(cert) == (technology, identity.evidence)
    check_binding(cert, identity.evidence, technology)


def test_enarx_extensions(identities):
    def enarx(tee):
        ext = identities[tee].certificate.extensions.get_extension_for_oid(
            x509.ObjectIdentifier(ENARX_OIDS[TEES[tee]]))
        assert not ext.critical
        return ext.value.value

    assert enarx("none") == b""
    assert enarx("sgx-sim") == identities["sgx-sim"].evidence  # the raw quote
    vcek, report = der.decode(enarx("snp-sim")).children()
    evidence = identities["snp-sim"].evidence
    assert report.as_octet_string() == evidence[:0x4A0]
    table = {e.guid: e.data for e in amdcerts.parse_table(evidence[0x4A0:])}
    assert der.encode_tlv(vcek.tag, vcek.value) == table[amdcerts.VCEK_GUID]
    for tee in ("tdx-sim", "cca-sim"):
        oids = {e.oid.dotted_string for e in identities[tee].certificate.extensions}
        assert not oids & set(ENARX_OIDS.values())  # Enarx defined none for TDX or CCA


def test_evidence_bound_to_another_key_is_refused(identities):
    for tee in ("sgx-sim", "snp-sim", "tdx-sim", "cca-sim"):
        identity = identities[tee]
        key = generate_key("p384" if tee in ("snp-sim", "cca-sim") else "p256")
        copied = build_certificate(key, identity.technology, identity.evidence)
        technology, evidence = evidence_from_certificate(copied)
        with pytest.raises(BindingError, match="not bound"):
            check_binding(copied, evidence, technology)


def test_enarx_extension_must_agree_with_the_cmw(identities):
    sgx, tdx = identities["sgx-sim"], identities["tdx-sim"]
    key = generate_key("p256")
    cert = build_certificate(key, 2, sgx.evidence)
    # Re-sign the same fields with a tampered Enarx SGX value.
    tampered = (x509.CertificateBuilder().subject_name(cert.subject).issuer_name(cert.issuer)
                .public_key(key.public_key()).serial_number(cert.serial_number)
                .not_valid_before(cert.not_valid_before_utc)
                .not_valid_after(cert.not_valid_after_utc))
    for ext in cert.extensions:
        value = ext.value
        if ext.oid.dotted_string == ENARX_OIDS[2]:
            value = x509.UnrecognizedExtension(ext.oid, tdx.evidence)
        tampered = tampered.add_extension(value, ext.critical)
    tampered_cert = tampered.sign(key, hashes.SHA256())
    with pytest.raises(CertificateEvidenceError, match="disagrees"):
        evidence_from_certificate(tampered_cert)


def test_certificate_without_evidence():
    key = generate_key("p256")
    with pytest.raises(CertificateEvidenceError, match="no attestation evidence"):
        evidence_from_certificate(build_certificate(key, None, b""))


class _PinnedSource:
    """An SEV-like source: technology 1, the buffer is the delivered PKCS#8 key."""

    technology = abi.Technology.SEV

    def __init__(self, secret: bytes):
        self.secret = secret

    def evidence_size(self) -> int:
        return len(self.secret)

    def evidence(self, nonce: bytes) -> bytes:
        return self.secret


def test_sev_identity_uses_the_delivered_key():
    key = generate_key("p384")
    secret = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                               serialization.NoEncryption())
    identity = make_identity(_PinnedSource(secret))
    assert identity.technology == abi.Technology.SEV
    assert spki_der(identity.certificate.public_key()) == spki_der(key.public_key())
    with pytest.raises(CertificateEvidenceError):
        evidence_from_certificate(identity.certificate)
    with pytest.raises(KeepAttestationFailed, match="PKCS#8"):
        make_identity(_PinnedSource(b"not a key"))


class _FailingSource:
    technology = abi.Technology.SGX

    def evidence_size(self) -> int:
        raise abi.PlatformFailure("host gone")

    def evidence(self, nonce: bytes) -> bytes:
        raise abi.PlatformFailure("host gone")


def test_attest_reports_platform_failure():
    with pytest.raises(KeepAttestationFailed, match="errno 5"):
        attest(_FailingSource(), bytes(64))
