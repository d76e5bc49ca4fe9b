"""The keep's CSR to the service and the service's checks of it, with evidence from real
simulated keeps."""

import base64
import datetime as dt
import hashlib
import os
import traceback

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import AttributeOID, NameOID

import attestcall
from attestcall import der
from attestcall.deploy.cmw import CMW_EXTENSION_OID, CmwRecord, extension_value
from attestcall.deploy.identity import attest, build_certificate
from attestcall.deploy.keys import generate_key, signature_hash, spki_der
from attestcall.keep.platforms import open_keep
from attestcall.service import csr as csrs
from attestcall.service import result as results
from attestcall.service.ca import ServiceCa
from attestcall.service.csr import (
    MAX_CSR_SIZE,
    ChallengeError,
    CsrBindingError,
    CsrError,
    CsrEvidenceError,
    CsrKeyRefused,
    CsrSignatureInvalid,
    CsrTooLarge,
    MalformedCsr,
    PreAttestationRefused,
    binding_nonce,
    build_csr,
    check_binding,
    decode_challenge,
    encode_challenge,
    read_csr,
)
from attestcall.tees import registry

TEES = {"sgx-sim": 2, "snp-sim": 3, "tdx-sim": 4}
MEASUREMENT_CLAIM = {2: "mrenclave", 3: "measurement", 4: "mrtd"}
CHALLENGE_OID = "1.2.840.113549.1.9.7"


class Keep:
    """A key made for a simulated keep, a challenge, and the keep's evidence bound to both."""

    def __init__(self, source, technology: int):
        self.key = generate_key(registry().by_id(technology).default_key_type or "p256")
        self.challenge = os.urandom(32)
        self.technology, self.evidence = attest(
            source, binding_nonce(self.key.public_key(), self.challenge))

    def csr(self, **kw) -> x509.CertificateSigningRequest:
        args = dict(private_key=self.key, technology=self.technology, evidence=self.evidence,
                    challenge=self.challenge)
        args.update(kw)
        return build_csr(**args)

    def der(self, **kw) -> bytes:
        return self.csr(**kw).public_bytes(serialization.Encoding.DER)


@pytest.fixture(scope="module")
def keeps(tmp_path_factory):
    home = tmp_path_factory.getbasetemp() / "attestcall-home"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ATTESTCALL_HOME", str(home))
        out = {}
        for tee, technology in TEES.items():
            with open_keep(tee, b"") as keep:
                out[tee] = Keep(keep.source, technology)
        yield out


@pytest.fixture(scope="module")
def sgx(keeps):
    return keeps["sgx-sim"]


# ------------------------------------------------------------------- helpers


def resign(csr_der: bytes, key, attributes: list[bytes] | None = None) -> bytes:
    """``csr_der`` with its attributes replaced by ``attributes`` (encoded Attribute
    SEQUENCEs; None: unchanged), signed again with ``key``: a well-signed CSR that
    cryptography's builder would not make."""
    info, algorithm, _ = der.decode(csr_der).children()
    version, subject, spki, attrs = der.decode_all(info.value)
    if attributes is not None:
        attrs = der.Tlv(attrs.tag, b"".join(sorted(attributes)))
    body = b"".join(der.encode_tlv(t.tag, t.value) for t in (version, subject, spki, attrs))
    info_der = der.encode_tlv(der.SEQUENCE, body)
    signature = key.sign(info_der, ec.ECDSA(hashes.SHA256()))
    return der.encode_sequence(info_der, der.encode_tlv(algorithm.tag, algorithm.value),
                               der.encode_tlv(0x03, b"\x00" + signature))


def attributes_of(csr_der: bytes) -> list[bytes]:
    info = der.decode(csr_der).children()[0]
    attrs = der.decode_all(info.value)[3]
    return [der.encode_tlv(a.tag, a.value) for a in der.decode_all(attrs.value)]


def challenge_attribute(*values: bytes, tag: int = 0x0C) -> bytes:
    return der.encode_sequence(der.encode_oid(CHALLENGE_OID),
                               der.encode_tlv(0x31, b"".join(der.encode_tlv(tag, v)
                                                             for v in values)))


def without_challenge(csr_der: bytes) -> list[bytes]:
    marker = der.encode_oid(CHALLENGE_OID)
    return [a for a in attributes_of(csr_der) if marker not in a]


def csr_with(key, extensions=(), challenge: bytes | None = None) -> bytes:
    """A CSR signed by ``key`` with exactly these extensions and challenge text."""
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "handmade")]))
    if challenge is not None:
        builder = builder.add_attribute(AttributeOID.CHALLENGE_PASSWORD, challenge)
    for extension in extensions:
        builder = builder.add_extension(extension, critical=False)
    hash_algorithm = signature_hash("p384" if isinstance(key, ec.EllipticCurvePrivateKey)
                                    and key.curve.name == "secp384r1" else "p256")
    return builder.sign(key, hash_algorithm).public_bytes(serialization.Encoding.DER)


def cmw(media_type: str, value: bytes) -> x509.UnrecognizedExtension:
    return x509.UnrecognizedExtension(x509.ObjectIdentifier(CMW_EXTENSION_OID),
                                      extension_value(CmwRecord(media_type, value, 4)))


def assert_no_window(secret: bytes, exc: BaseException) -> None:
    """No 16-byte window of ``secret`` in the error's text, repr or traceback: raw, hex,
    Python bytes repr, or base64 (standard or url-safe, at every alignment)."""
    texts = [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
    if isinstance(exc, CsrError):
        assert "\n" not in str(exc)  # one line for a person
    encoded = []
    for offset in range(3):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            text = encode(secret[offset:]).decode()
            encoded += [text[i:i + 20] for i in range(0, len(text) - 20, 4)]
    for text in texts:
        lowered = text.lower()
        for start in range(len(secret) - 15):
            window = secret[start:start + 16]
            assert window.hex() not in lowered
            assert window.decode("latin-1") not in text
            assert repr(window)[2:-1] not in text
        for piece in encoded:
            assert piece not in text


# ------------------------------------------------------------------- keep side


def test_binding_nonce_is_sha512_of_the_key_and_the_challenge():
    key = generate_key("p256").public_key()
    challenge = bytes(range(32))
    nonce = binding_nonce(key, challenge)
    assert len(nonce) == 64
    assert nonce == hashlib.sha512(spki_der(key) + challenge).digest()
    assert binding_nonce(key, bytes(32)) != nonce
    assert binding_nonce(generate_key("p256").public_key(), challenge) != nonce


def test_the_challenge_text():
    challenge = bytes([0xFB, 0xFF] * 16)
    text = encode_challenge(challenge)
    assert len(text) == 43 and "=" not in text and "-" in text and "_" in text
    assert decode_challenge(text) == challenge
    assert decode_challenge(text + "=") == challenge  # padding is tolerated
    for bad in ("", text[:-1], text + "A", text + "==", "+" + text[1:], "/" + text[1:],
                text[:-1] + "B",  # a last character with stray low bits: not canonical
                "!" * 43, base64.urlsafe_b64encode(bytes(16)).decode()):
        with pytest.raises(ChallengeError):
            decode_challenge(bad)


def test_the_csr_carries_what_the_keep_s_certificate_carries(sgx):
    csr = sgx.csr(subject="keep 7")
    assert csr.is_signature_valid
    assert csr.subject.rfc4514_string() == "CN=keep 7"
    challenge = csr.attributes.get_attribute_for_oid(AttributeOID.CHALLENGE_PASSWORD)
    assert challenge.value == encode_challenge(sgx.challenge).encode()
    assert challenge._type == 0x0C  # UTF8String: base64url's "_" is not a PrintableString
    cert = build_certificate(sgx.key, sgx.technology, sgx.evidence)
    cert_extensions = {e.oid: e for e in cert.extensions if e.oid.dotted_string in (
        CMW_EXTENSION_OID, "1.3.6.1.4.1.58270.1.2")}
    assert len(cert_extensions) == 2
    assert {e.oid: e for e in csr.extensions} == cert_extensions


def test_the_keep_refuses_to_build_what_it_must_not_send(sgx):
    with pytest.raises(ChallengeError, match="32 bytes, not 31"):
        sgx.csr(challenge=bytes(31))
    with pytest.raises(CsrEvidenceError, match="technology 200"):
        sgx.csr(technology=200)


# ------------------------------------------------------------------- accepted


@pytest.mark.parametrize("tee", TEES)
@pytest.mark.parametrize("encoding", [serialization.Encoding.DER, serialization.Encoding.PEM])
def test_a_simulated_keep_s_csr_is_read_and_bound(keeps, tee, encoding):
    keep = keeps[tee]
    data = keep.csr().public_bytes(encoding)
    contents = read_csr(data)
    assert contents.technology == TEES[tee]
    assert contents.evidence == keep.evidence
    assert contents.challenge == keep.challenge
    assert contents.public_key == keep.key.public_key()
    assert contents.subject.rfc4514_string() == "CN=attestcall keep"
    check_binding(contents)
    assert keep.evidence.hex() not in repr(contents)  # logs stay small and evidence-free


@pytest.mark.parametrize("tee", TEES)
def test_from_csr_to_certificate(keeps, tee, tmp_path):
    """What the HTTP application will do: read, bind, verify, build the result, issue."""
    keep = keeps[tee]
    contents = read_csr(keep.der())
    check_binding(contents)
    tee_record = registry().by_id(contents.technology)
    collateral = (tee_record.simulated_collateral(contents.evidence)
                  if tee_record.simulated_collateral else None)
    verdict = attestcall.verify(contents.evidence, collateral=collateral,
                                nonce=binding_nonce(contents.public_key, contents.challenge),
                                trust_simulated=True)
    assert verdict.accepted, verdict.reasons
    result = results.from_verdict(verdict, None)
    assert result.measurement.hex() == verdict.claims[MEASUREMENT_CLAIM[TEES[tee]]]
    ca = ServiceCa.load_or_create(tmp_path)
    now = dt.datetime.now(dt.UTC)
    cert = ca.issue(contents.public_key, contents.subject, lifetime=dt.timedelta(hours=24),
                    result=result, crl_url="http://service/v1/crl", now=now)
    cert.verify_directly_issued_by(ca.certificate)
    assert cert.public_key() == keep.key.public_key()
    assert results.from_certificate(cert) == result


# ------------------------------------------------------------------- refused


def test_truncated_csrs_are_refused(sgx):
    data = sgx.der()
    cuts = sorted({*range(0, 64), *range(64, len(data), max(1, len(data) // 150)),
                   len(data) - 1})
    for end in cuts:
        with pytest.raises(MalformedCsr):
            read_csr(data[:end])


@pytest.mark.parametrize("garbage", [
    b"", b"\x00", b"\x30\x00", bytes(range(256)) * 4,
    b"-----BEGIN CERTIFICATE REQUEST-----\nZ2FyYmFnZQ==\n-----END CERTIFICATE REQUEST-----\n",
    b"-----BEGIN CERTIFICATE REQUEST-----\n",
])
def test_garbage_is_refused(garbage):
    with pytest.raises(MalformedCsr, match="not a DER or PEM PKCS#10"):
        read_csr(garbage)


def test_trailing_bytes_and_a_certificate_are_refused(sgx):
    with pytest.raises(MalformedCsr):
        read_csr(sgx.der() + b"\x00")
    cert = build_certificate(sgx.key, sgx.technology, sgx.evidence)
    with pytest.raises(MalformedCsr):
        read_csr(cert.public_bytes(serialization.Encoding.DER))


def test_a_bad_signature_is_refused(sgx):
    data = bytearray(sgx.der())
    data[-1] ^= 0x01  # the last byte of the signature's s
    with pytest.raises(CsrSignatureInvalid, match="does not verify"):
        read_csr(bytes(data))
    other = generate_key("p256")  # a CSR signed by another key than the one it names
    with pytest.raises(CsrSignatureInvalid):
        read_csr(resign(sgx.der(), other))


def test_the_resigning_helper_itself_gives_an_accepted_csr(sgx):
    contents = read_csr(resign(sgx.der(), sgx.key))
    check_binding(contents)
    assert contents.challenge == sgx.challenge


def test_a_missing_challenge_is_refused(sgx):
    with pytest.raises(ChallengeError, match="no challengePassword"):
        read_csr(resign(sgx.der(), sgx.key, without_challenge(sgx.der())))


def test_a_duplicated_challenge_is_refused(sgx):
    text = encode_challenge(sgx.challenge).encode()
    twice = attributes_of(sgx.der()) + [challenge_attribute(text)]
    with pytest.raises(ChallengeError, match="more than one"):
        read_csr(resign(sgx.der(), sgx.key, twice))
    two_values = without_challenge(sgx.der()) + [challenge_attribute(text, text[::-1])]
    with pytest.raises(CsrError):
        read_csr(resign(sgx.der(), sgx.key, two_values))


@pytest.mark.parametrize("text", [
    encode_challenge(bytes(16)), encode_challenge(bytes(33)), encode_challenge(b""),
    "!" * 43, base64.b64encode(bytes([0xFB, 0xFF] * 16)).decode()])
def test_a_challenge_of_the_wrong_length_or_alphabet_is_refused(sgx, text):
    attrs = without_challenge(sgx.der()) + [challenge_attribute(text.encode())]
    with pytest.raises(ChallengeError):
        read_csr(resign(sgx.der(), sgx.key, attrs))


def test_a_challenge_of_another_string_type_is_refused(sgx):
    text = encode_challenge(sgx.challenge).encode()
    attrs = without_challenge(sgx.der()) + [challenge_attribute(text, tag=0x04)]
    with pytest.raises(CsrError):
        read_csr(resign(sgx.der(), sgx.key, attrs))


@pytest.mark.parametrize("tee", TEES)
def test_evidence_bound_to_another_key_is_refused(keeps, tee):
    keep = keeps[tee]
    other = generate_key(registry().by_id(TEES[tee]).default_key_type or "p256")
    contents = read_csr(keep.der(private_key=other))
    with pytest.raises(CsrBindingError, match="not bound to this request"):
        check_binding(contents)


@pytest.mark.parametrize("tee", TEES)
def test_evidence_bound_to_another_challenge_is_refused(keeps, tee):
    keep = keeps[tee]
    contents = read_csr(keep.der(challenge=os.urandom(32)))
    with pytest.raises(CsrBindingError, match="not bound to this request"):
        check_binding(contents)


def test_oversized_input_is_refused_before_parsing(sgx):
    data = sgx.der()
    with pytest.raises(CsrTooLarge, match="limit is 1048576"):
        read_csr(data + bytes(MAX_CSR_SIZE + 1 - len(data)))
    with pytest.raises(CsrTooLarge):
        read_csr(b"-----BEGIN CERTIFICATE REQUEST-----\n" + b"A" * MAX_CSR_SIZE)
    with pytest.raises(MalformedCsr):  # at the limit: parsed, and refused as trailing bytes
        read_csr(data + bytes(MAX_CSR_SIZE - len(data)))


def test_a_csr_without_evidence_is_refused(sgx):
    text = encode_challenge(sgx.challenge).encode()
    with pytest.raises(CsrEvidenceError, match="no attestation evidence"):
        read_csr(csr_with(sgx.key, challenge=text))
    with pytest.raises(CsrEvidenceError, match="CMW extension is malformed"):
        read_csr(csr_with(sgx.key, [x509.UnrecognizedExtension(
            x509.ObjectIdentifier(CMW_EXTENSION_OID), b"\x04\x01\x00")], challenge=text))


def test_an_enarx_extension_that_disagrees_is_refused(keeps):
    sgx, tdx = keeps["sgx-sim"], keeps["tdx-sim"]
    text = encode_challenge(sgx.challenge).encode()
    media = registry().by_id(2).media_type
    enarx = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.58270.1.2"),
                                       tdx.evidence)
    with pytest.raises(CsrEvidenceError, match="disagrees"):
        read_csr(csr_with(sgx.key, [cmw(media, sgx.evidence), enarx], challenge=text))


def test_a_keep_without_a_tee_binds_nothing():
    key = generate_key("p256")
    challenge = os.urandom(32)
    contents = read_csr(build_csr(key, 0, b"", challenge).public_bytes(
        serialization.Encoding.DER))
    assert contents.technology == 0 and contents.evidence == b""
    with pytest.raises(CsrBindingError, match="no report data"):
        check_binding(contents)


def test_an_unsupported_key_is_refused():
    key = ec.generate_private_key(ec.SECP521R1())
    with pytest.raises(CsrKeyRefused, match="secp521r1"):
        read_csr(csr_with(key, challenge=encode_challenge(bytes(32)).encode()))


# ------------------------------------------------------------------- SEV key material


@pytest.fixture
def sev_key() -> bytes:
    """A PKCS#8 key as an SEV keep's get_attestation would return it."""
    return generate_key("p384").private_bytes(serialization.Encoding.DER,
                                              serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption())


def test_the_keep_never_puts_sev_key_material_in_a_csr(sev_key):
    with pytest.raises(PreAttestationRefused, match="technology 1 is pre-attestation") as info:
        build_csr(generate_key("p384"), 1, sev_key, os.urandom(32))
    assert_no_window(sev_key, info.value)


def test_the_service_refuses_sev_key_material_without_quoting_it(sev_key, monkeypatch):
    """Whatever extension a keep smuggles the key in, no refusal quotes it."""
    key = generate_key("p256")
    text = encode_challenge(os.urandom(32)).encode()
    attempts = [
        [cmw("application/vnd.attestcall.evidence.sev-key", sev_key)],
        [x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.58270.1.2"), sev_key)],
        [cmw(registry().by_id(2).media_type, sev_key),
         x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.58270.1.2"),
                                    sev_key[::-1])],
    ]
    for extensions in attempts:
        with pytest.raises(CsrError) as info:
            read_csr(csr_with(key, extensions, challenge=text))
        assert_no_window(sev_key, info.value)
    for technology in (2, 3, 4):  # a known media type: refused at the binding, unparsed
        contents = read_csr(csr_with(key, [cmw(registry().by_id(technology).media_type,
                                               sev_key)], challenge=text))
        with pytest.raises(CsrError) as info:
            check_binding(contents)
        assert_no_window(sev_key, info.value)
        assert_no_window(sev_key, Exception(repr(contents)))
    # Were SEV ever to get a media type, the service still refuses technology 1 by name.
    monkeypatch.setattr(csrs, "evidence_from_extensions", lambda *a, **k: (1, sev_key))
    with pytest.raises(PreAttestationRefused, match="never sent") as info:
        read_csr(csr_with(key, [cmw(registry().by_id(2).media_type, b"")], challenge=text))
    assert_no_window(sev_key, info.value)


def test_the_window_check_itself_catches_a_leak(sev_key):
    for leak in (sev_key[40:56].hex(), repr(sev_key[3:40]),
                 base64.b64encode(sev_key[10:60]).decode()):
        with pytest.raises(AssertionError):
            assert_no_window(sev_key, CsrError(f"bad key {leak}"))
