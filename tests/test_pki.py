"""attestcall.pki: links, CRLs, revocation, validity windows and pinned roots, for ECDSA
P-256 (Intel's shape) and RSASSA-PSS SHA-384 (AMD's shape, including serial 0)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import NameOID

from attestcall import der, pki
from attestcall.pki import Fault, Timing
from tests import paths

AMD = paths.DATA / "amd"
T0 = datetime(2024, 1, 1, tzinfo=UTC)
T1 = datetime(2034, 1, 1, tzinfo=UTC)
NOW = datetime(2025, 6, 1, tzinfo=UTC)
PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)

Key = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


@dataclass
class Pki:
    """A root, an intermediate and a leaf, all signed with one algorithm."""

    root_key: Key
    ca_key: Key
    root: x509.Certificate
    ca: x509.Certificate
    leaf: x509.Certificate
    hash: hashes.HashAlgorithm
    rsa_padding: padding.PSS | None

    def sign_cert(
        self, subject: str, issuer: str, key: Key, signer: Key, *, ca: bool = False,
        start: datetime = T0, end: datetime = T1, serial: int = 1,
    ) -> x509.Certificate:  # fmt: skip
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(subject))
            .issuer_name(_name(issuer))
            .public_key(key.public_key())
            .serial_number(serial)
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        return builder.sign(signer, self.hash, rsa_padding=self.rsa_padding)

    def crl(
        self, signer: Key, issuer: str, serials: tuple[int, ...] = ()
    ) -> x509.CertificateRevocationList:
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(_name(issuer))
            .last_update(T0)
            .next_update(T1)
        )
        for serial in serials:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(T0).build()
            )
        return builder.sign(signer, self.hash, rsa_padding=self.rsa_padding)


def _make(kind: str) -> Pki:
    def key() -> Key:
        if kind == "ecdsa":
            return ec.generate_private_key(ec.SECP256R1())
        return rsa.generate_private_key(65537, 2048)

    root_key, ca_key, leaf_key = key(), key(), key()
    algorithm = hashes.SHA256() if kind == "ecdsa" else hashes.SHA384()
    shape = Pki(root_key, ca_key, None, None, None, algorithm,  # type: ignore[arg-type]
                None if kind == "ecdsa" else PSS)  # fmt: skip
    shape.root = shape.sign_cert("Root", "Root", root_key, root_key, ca=True)
    shape.ca = shape.sign_cert("CA", "Root", ca_key, root_key, ca=True, serial=2)
    shape.leaf = shape.sign_cert("Leaf", "CA", leaf_key, ca_key, serial=3)
    return shape


_SHAPES: dict[str, Pki] = {}


@pytest.fixture(params=["ecdsa", "rsa-pss"])
def shape(request: pytest.FixtureRequest) -> Pki:
    kind = request.param
    if kind not in _SHAPES:
        _SHAPES[kind] = _make(kind)
    return _SHAPES[kind]


def _tamper_signature(cert: x509.Certificate) -> x509.Certificate:
    """The same certificate with the last byte of its signature flipped."""
    data = bytearray(cert.public_bytes(Encoding.DER))
    data[-1] ^= 0x01
    return x509.load_der_x509_certificate(bytes(data))


def _tamper_crl_signature(crl: x509.CertificateRevocationList) -> x509.CertificateRevocationList:
    data = bytearray(crl.public_bytes(Encoding.DER))
    data[-1] ^= 0x01
    return x509.load_der_x509_crl(bytes(data))


# ---------------------------------------------------------------------------- links


def test_a_good_chain_links_and_ends_at_the_pinned_root(shape: Pki) -> None:
    chain = pki.check_chain([shape.leaf, shape.ca, shape.root], [shape.root])
    assert chain.links == (None, None)
    assert chain.linked and chain.pinned
    assert chain.invalid_at(NOW) == []


def test_an_unpinned_root_is_reported(shape: Pki) -> None:
    other = _make("ecdsa").root
    chain = pki.check_chain([shape.leaf, shape.ca, shape.root], [other])
    assert chain.linked and not chain.pinned


def test_a_tampered_signature_is_a_bad_signature(shape: Pki) -> None:
    failure = pki.issued_by(_tamper_signature(shape.leaf), shape.ca)
    assert failure is not None and failure.fault is Fault.BAD_SIGNATURE
    chain = pki.check_chain([shape.leaf, _tamper_signature(shape.ca), shape.root], [shape.root])
    assert chain.links[0] is None
    assert chain.links[1] is not None and chain.links[1].fault is Fault.BAD_SIGNATURE
    assert not chain.linked


def test_a_wrong_issuer_name_is_a_wrong_issuer(shape: Pki) -> None:
    failure = pki.issued_by(shape.leaf, shape.root)  # the leaf names "CA", not "Root"
    assert failure is not None and failure.fault is Fault.WRONG_ISSUER


def test_the_right_name_with_the_wrong_key_is_a_bad_signature(shape: Pki) -> None:
    impostor = shape.sign_cert("CA", "Root", shape.root_key, shape.root_key, ca=True)
    failure = pki.issued_by(shape.leaf, impostor)
    assert failure is not None and failure.fault is Fault.BAD_SIGNATURE


def test_an_issuer_key_of_another_kind_is_a_wrong_issuer() -> None:
    ecdsa, pss = _make("ecdsa"), _SHAPES.get("rsa-pss") or _make("rsa-pss")
    impostor = pss.sign_cert("CA", "Root", pss.ca_key, pss.root_key, ca=True)
    failure = pki.issued_by(ecdsa.leaf, impostor)  # the name matches, the key type cannot
    assert failure is not None and failure.fault is Fault.WRONG_ISSUER


def test_amd_vcek_with_serial_zero_links_to_its_ask_with_pss() -> None:
    ask, ark = x509.load_pem_x509_certificates((AMD / "ask_ark_milan.pem").read_bytes())
    vcek = pki.load_der_certificate((AMD / "milan_report_v2.vcek.der").read_bytes())
    with pytest.warns(CryptographyDeprecationWarning):
        assert vcek.serial_number == 0
    assert vcek.signature_hash_algorithm is not None
    assert vcek.signature_hash_algorithm.name == "sha384"
    chain = pki.check_chain([vcek, ask, ark], [ark])
    assert chain.linked and chain.pinned
    assert pki.issued_by(vcek, ark) is not None  # the VCEK names the ASK, not the ARK


def test_load_der_certificate_gives_no_warning_for_serial_zero(
    recwarn: pytest.WarningsRecorder,
) -> None:
    pki.load_der_certificate((AMD / "milan_report_v2.vcek.der").read_bytes())
    assert not [w for w in recwarn if "serial" in str(w.message)]


def test_an_empty_chain_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        pki.check_chain([], [])


# ---------------------------------------------------------------------------- windows


def test_expired_and_not_yet_valid_certificates(shape: Pki) -> None:
    old = shape.sign_cert("Leaf", "CA", shape.ca_key, shape.ca_key, end=NOW - timedelta(days=1))
    young = shape.sign_cert("Leaf", "CA", shape.ca_key, shape.ca_key,
                            start=NOW + timedelta(days=1))  # fmt: skip
    assert pki.cert_window(old).timing(NOW) is Timing.LATE
    assert pki.cert_window(young).timing(NOW) is Timing.EARLY
    assert pki.cert_window(shape.leaf).timing(NOW) is Timing.VALID
    chain = pki.check_chain([old, shape.ca, shape.root], [shape.root])
    assert chain.invalid_at(NOW) == [(0, Timing.LATE)]
    chain = pki.check_chain([young, shape.ca, shape.root], [shape.root])
    assert chain.invalid_at(NOW) == [(0, Timing.EARLY)]


def test_window_edges() -> None:
    cert_like = pki.Window(T0, T1, True)
    assert cert_like.timing(T0) is Timing.VALID
    assert cert_like.timing(T1) is Timing.VALID
    assert cert_like.timing(T1 + timedelta(seconds=1)) is Timing.LATE
    assert cert_like.timing(T0 - timedelta(seconds=1)) is Timing.EARLY
    crl_like = pki.Window(T0, T1, False)
    assert crl_like.timing(T0) is Timing.VALID
    assert crl_like.timing(T1) is Timing.LATE


def test_crl_window(shape: Pki) -> None:
    crl = shape.crl(shape.ca_key, "CA")
    window = pki.crl_window(crl)
    assert (window.start, window.end, window.end_inclusive) == (T0, T1, False)
    assert window.timing(NOW) is Timing.VALID
    assert window.timing(T1) is Timing.LATE
    assert window.timing(T0 - timedelta(seconds=1)) is Timing.EARLY


# ---------------------------------------------------------------------------- CRLs


def test_a_crl_signed_by_its_issuer_holds(shape: Pki) -> None:
    assert pki.crl_issued_by(shape.crl(shape.ca_key, "CA"), shape.ca) is None
    assert pki.crl_issued_by(shape.crl(shape.root_key, "Root"), shape.root) is None


def test_a_crl_signed_by_the_wrong_key_is_a_bad_signature(shape: Pki) -> None:
    forged = shape.crl(shape.root_key, "CA")  # names the CA, signed with the root's key
    failure = pki.crl_issued_by(forged, shape.ca)
    assert failure is not None and failure.fault is Fault.BAD_SIGNATURE


def test_a_tampered_crl_signature_is_a_bad_signature(shape: Pki) -> None:
    crl = _tamper_crl_signature(shape.crl(shape.ca_key, "CA"))
    failure = pki.crl_issued_by(crl, shape.ca)
    assert failure is not None and failure.fault is Fault.BAD_SIGNATURE


def test_a_crl_of_another_issuer_is_a_wrong_issuer(shape: Pki) -> None:
    failure = pki.crl_issued_by(shape.crl(shape.root_key, "Root"), shape.ca)
    assert failure is not None and failure.fault is Fault.WRONG_ISSUER


def test_a_crl_checked_with_a_key_of_another_kind_fails() -> None:
    ecdsa, pss = _make("ecdsa"), _SHAPES.get("rsa-pss") or _make("rsa-pss")
    impostor = pss.sign_cert("CA", "Root", pss.ca_key, pss.root_key, ca=True)
    failure = pki.crl_issued_by(ecdsa.crl(ecdsa.ca_key, "CA"), impostor)
    assert failure is not None
    assert failure.fault in (Fault.UNSUPPORTED, Fault.BAD_SIGNATURE)


def test_revocation_by_serial(shape: Pki) -> None:
    crl = shape.crl(shape.ca_key, "CA", serials=(3, 77))
    assert pki.revoked(crl, shape.leaf.serial_number)
    assert pki.revoked(crl, 77)
    assert not pki.revoked(crl, shape.ca.serial_number)
    assert not pki.revoked(crl, 0)  # AMD's serial is looked up, not special
    assert pki.revoked(crl, -5)  # no CA issues a negative serial: treated as listed
    assert not pki.revoked(shape.crl(shape.ca_key, "CA"), 3)


def test_an_rsa_pss_crl_names_its_algorithm(shape: Pki) -> None:
    crl = shape.crl(shape.ca_key, "CA")
    if shape.rsa_padding is None:
        assert crl.signature_algorithm_oid == x509.SignatureAlgorithmOID.ECDSA_WITH_SHA256
    else:
        assert crl.signature_algorithm_oid == x509.SignatureAlgorithmOID.RSASSA_PSS
        # the PSS parameters (SHA-384, MGF1 SHA-384, salt 48) are inside the CRL
        assert der.encode_oid("2.16.840.1.101.3.4.2.2") in crl.public_bytes(Encoding.DER)
