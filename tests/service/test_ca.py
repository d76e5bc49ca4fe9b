"""The service CA: created once and shared, its key kept private, what it signs."""

import datetime as dt
import os
import stat
import threading

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, mldsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from attestcall.deploy.keys import generate_key
from attestcall.service import result as results
from attestcall.service.ca import (
    CERT_FILE,
    CLOCK_SKEW,
    KEY_FILE,
    CaError,
    CaKeyExposed,
    Revoked,
    ServiceCa,
)
from attestcall.service.storage import Attempt, Storage
from tests.service.helpers import Served, cli, verdict_for

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
RESULT = results.from_verdict(
    verdict_for("snp", {"measurement": bytes(range(48)).hex()}, tcb_status=None, advisories=[]),
    None, issued_at=NOW)
CRL_URL = "http://127.0.0.1:8443/v1/crl"
SUBJECT = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "attestcall keep")])


@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    return ServiceCa.load_or_create(tmp_path_factory.mktemp("service-home"))


def issue(ca, key=None, lifetime=dt.timedelta(hours=24), now=NOW):
    key = key or generate_key("p256")
    return ca.issue(key.public_key(), SUBJECT, lifetime=lifetime, result=RESULT,
                    crl_url=CRL_URL, now=now)


def ext(cert, cls):
    return cert.extensions.get_extension_for_class(cls)


# ------------------------------------------------------------------- the CA itself


def test_created_once_then_reused(tmp_path):
    home = tmp_path / "home"
    first = ServiceCa.load_or_create(home)
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert stat.S_IMODE((home / KEY_FILE).stat().st_mode) == 0o600
    key_pem, cert_pem = (home / KEY_FILE).read_bytes(), (home / CERT_FILE).read_bytes()
    assert key_pem.startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8
    assert {p.name for p in home.iterdir()} == {CERT_FILE, KEY_FILE}  # no leftovers
    again = ServiceCa.load_or_create(home, key_type="ed25519")  # an existing CA is kept
    assert again.certificate == first.certificate and again.key_type == "p384"
    assert (home / KEY_FILE).read_bytes() == key_pem
    assert (home / CERT_FILE).read_bytes() == cert_pem == first.pem()


def test_the_ca_certificate(ca):
    cert = ca.certificate
    assert isinstance(ca.key, ec.EllipticCurvePrivateKey) and ca.key.curve.name == "secp384r1"
    cert.verify_directly_issued_by(cert)
    constraints = ext(cert, x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca
    usage = ext(cert, x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign and not usage.digital_signature
    assert ext(cert, x509.SubjectKeyIdentifier).value == \
        x509.SubjectKeyIdentifier.from_public_key(ca.key.public_key())
    assert cert.subject == cert.issuer


@pytest.mark.parametrize("key_type, cls", [("p256", ec.EllipticCurvePrivateKey),
                                           ("ed25519", ed25519.Ed25519PrivateKey)])
def test_other_key_types(tmp_path, key_type, cls):
    ca = ServiceCa.load_or_create(tmp_path, key_type=key_type)
    assert isinstance(ca.key, cls) and ca.key_type == key_type
    issue(ca).verify_directly_issued_by(ca.certificate)


def test_unknown_key_type_refused(tmp_path):
    with pytest.raises(CaError, match="unknown CA key type 'rsa3072'"):
        ServiceCa.load_or_create(tmp_path / "home", key_type="rsa3072")
    assert not (tmp_path / "home").exists()


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660])
def test_a_key_others_can_read_is_refused(tmp_path, mode):
    ServiceCa.load_or_create(tmp_path)
    os.chmod(tmp_path / KEY_FILE, mode)
    with pytest.raises(CaKeyExposed,
                       match=f"readable by group or others \\(mode {mode:o}\\).*chmod 600"):
        ServiceCa.load_or_create(tmp_path)
    os.chmod(tmp_path / KEY_FILE, 0o400)  # read-only for the owner is fine
    ServiceCa.load_or_create(tmp_path)


def test_replicas_starting_together_share_one_ca(tmp_path):
    home = tmp_path / "shared"
    barrier = threading.Barrier(8)
    found: list[ServiceCa] = []
    errors: list[BaseException] = []

    def start() -> None:
        barrier.wait()
        try:
            found.append(ServiceCa.load_or_create(home))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len({ca.pem() for ca in found}) == 1
    assert ServiceCa.load_or_create(home).pem() == found[0].pem()
    assert {p.name for p in home.iterdir()} == {CERT_FILE, KEY_FILE}


def test_a_certificate_for_another_key_is_refused(tmp_path):
    ServiceCa.load_or_create(tmp_path / "a")
    other = ServiceCa.load_or_create(tmp_path / "b")
    (tmp_path / "a" / CERT_FILE).write_bytes(other.pem())
    with pytest.raises(CaError, match="not for the key"):
        ServiceCa.load_or_create(tmp_path / "a")


def test_unreadable_files_are_refused(tmp_path):
    ServiceCa.load_or_create(tmp_path)
    (tmp_path / CERT_FILE).write_bytes(b"junk")
    with pytest.raises(CaError, match="not a PEM certificate"):
        ServiceCa.load_or_create(tmp_path)
    (tmp_path / KEY_FILE).write_bytes(b"junk")
    with pytest.raises(CaError, match="not an unencrypted PEM private key"):
        ServiceCa.load_or_create(tmp_path)


def test_a_missing_certificate_is_made_again_for_the_same_key(tmp_path):
    first = ServiceCa.load_or_create(tmp_path)
    (tmp_path / CERT_FILE).unlink()
    second = ServiceCa.load_or_create(tmp_path)
    assert second.certificate.public_key() == first.certificate.public_key()
    issue(first).verify_directly_issued_by(second.certificate)


# ------------------------------------------------------------------- issuing


def test_issued_certificate(ca):
    key = generate_key("p384")
    lifetime = dt.timedelta(hours=24)
    cert = issue(ca, key, lifetime)
    cert.verify_directly_issued_by(ca.certificate)
    assert cert.issuer == ca.certificate.subject and cert.subject == SUBJECT
    assert cert.public_key() == key.public_key()
    assert cert.not_valid_before_utc == NOW - CLOCK_SKEW
    assert cert.not_valid_after_utc == NOW + lifetime
    assert cert.version == x509.Version.v3
    constraints = ext(cert, x509.BasicConstraints)
    assert constraints.critical and not constraints.value.ca
    usage = ext(cert, x509.KeyUsage).value
    assert usage.digital_signature and not usage.key_cert_sign and not usage.crl_sign
    assert list(ext(cert, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.SERVER_AUTH,
                                                           ExtendedKeyUsageOID.CLIENT_AUTH]
    assert ext(cert, x509.AuthorityKeyIdentifier).value.key_identifier == \
        ext(ca.certificate, x509.SubjectKeyIdentifier).value.digest
    assert ext(cert, x509.SubjectKeyIdentifier).value == \
        x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    points = ext(cert, x509.CRLDistributionPoints).value
    assert [p.full_name for p in points] == [[x509.UniformResourceIdentifier(CRL_URL)]]
    found = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(results.RESULT_OID))
    assert not found.critical
    assert results.from_certificate(cert) == RESULT


def test_serials_are_random_positive_and_below_2_159(ca):
    serials = [issue(ca).serial_number for _ in range(40)]
    assert all(0 < s < 2**159 for s in serials)
    assert len(set(serials)) == len(serials)
    assert max(serials).bit_length() > 140  # random over the whole range, not a counter


@pytest.mark.parametrize("lifetime", [dt.timedelta(minutes=10), dt.timedelta(days=7)])
def test_lifetime(ca, lifetime):
    cert = issue(ca, lifetime=lifetime)
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == lifetime + CLOCK_SKEW


def test_issue_refusals(ca):
    with pytest.raises(CaError, match="lifetime must be positive"):
        issue(ca, lifetime=dt.timedelta(0))
    with pytest.raises(CaError, match="outlive"):
        issue(ca, lifetime=dt.timedelta(days=20000))
    with pytest.raises(CaError, match="timezone-aware"):
        issue(ca, now=dt.datetime.now())
    with pytest.raises(CaError, match="cannot certify"):
        ca.issue(ec.generate_private_key(ec.SECP521R1()).public_key(), SUBJECT,
                 lifetime=dt.timedelta(hours=1), result=RESULT, crl_url=CRL_URL, now=NOW)


def test_a_certificate_without_the_result_extension_has_none():
    key = generate_key("p256")
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")])
    plain = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
             .public_key(key.public_key()).serial_number(1).not_valid_before(NOW)
             .not_valid_after(NOW + dt.timedelta(days=1)).sign(key, hashes.SHA256()))
    assert results.from_certificate(plain) is None


# ------------------------------------------------------------------- revocation


def test_crl_lists_the_revoked_serials(ca):
    revoked_cert = issue(ca)
    kept = issue(ca)
    at = NOW - dt.timedelta(minutes=3)
    entries = [(revoked_cert.serial_number, at, "keyCompromise"),
               Revoked(12345, at, x509.ReasonFlags.superseded),
               (2**158 + 1, at, "the tenant asked"),  # free text: no reason code
               (7, at, None)]
    crl = ca.crl(entries, now=NOW, next_update=NOW + dt.timedelta(hours=1))
    assert crl.is_signature_valid(ca.certificate.public_key())
    der = crl.public_bytes(serialization.Encoding.DER)
    loaded = x509.load_der_x509_crl(der)
    assert loaded.is_signature_valid(ca.certificate.public_key())
    assert loaded.issuer == ca.certificate.subject
    assert loaded.last_update_utc == NOW
    assert loaded.next_update_utc == NOW + dt.timedelta(hours=1)
    assert {r.serial_number for r in loaded} == {revoked_cert.serial_number, 12345,
                                                 2**158 + 1, 7}
    assert loaded.get_revoked_certificate_by_serial_number(kept.serial_number) is None
    entry = loaded.get_revoked_certificate_by_serial_number(revoked_cert.serial_number)
    assert entry.revocation_date_utc == at
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason == \
        x509.ReasonFlags.key_compromise
    free = loaded.get_revoked_certificate_by_serial_number(2**158 + 1)
    assert len(free.extensions) == 0
    number = loaded.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    assert number == int(NOW.timestamp() * 1000)
    assert loaded.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value \
        .key_identifier == ext(ca.certificate, x509.SubjectKeyIdentifier).value.digest


def test_crl_from_another_ca_does_not_verify(ca, tmp_path):
    other = ServiceCa.load_or_create(tmp_path)
    crl = other.crl([], now=NOW, next_update=NOW + dt.timedelta(hours=1))
    assert not crl.is_signature_valid(ca.certificate.public_key())
    assert len(crl) == 0


def test_crl_refusals(ca):
    with pytest.raises(CaError, match="next update"):
        ca.crl([], now=NOW, next_update=NOW)
    with pytest.raises(CaError, match="timezone-aware"):
        ca.crl([(1, dt.datetime(2025, 1, 1), None)], now=NOW,
               next_update=NOW + dt.timedelta(hours=1))


def test_crl_from_the_database_s_revocations(ca, tmp_path):
    """Storage.revoked() gives hex serials and the operator's reason text: they fit as is."""
    storage = Storage.open(None, tmp_path)
    now = dt.datetime.now(dt.UTC)
    cert = issue(ca, now=now.replace(microsecond=0))
    attempt = Attempt(time=now, peer="127.0.0.1", technology="snp", measurement="00" * 48,
                      tcb_status=None)
    storage.record_issuance(attempt, serial=cert.serial_number,
                            not_after=cert.not_valid_after_utc,
                            der=cert.public_bytes(serialization.Encoding.DER))
    assert storage.revoke_serial(cert.serial_number, "keyCompromise", now=now)
    crl = ca.crl(storage.revoked(now), now=now, next_update=now + dt.timedelta(hours=1))
    entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
    assert entry is not None
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason == \
        x509.ReasonFlags.key_compromise
    with pytest.raises(CaError, match="not hexadecimal"):
        ca.crl([("zz", now, None)], now=now, next_update=now + dt.timedelta(hours=1))
    with pytest.raises(CaError, match="not positive"):
        ca.crl([(0, now, None)], now=now, next_update=now + dt.timedelta(hours=1))


# ----------------------------------------------------------------------- ML-DSA-65


def test_serve_creates_an_mldsa65_ca_and_refuses_to_change_an_existing_one(env, tmp_path):
    """``service serve --ca-key-type mldsa65``: the CA it creates and serves is ML-DSA-65;
    asking an existing CA for another type is one line, and nothing is served."""
    home = tmp_path / "home"
    served = Served(env, "--home", str(home), "--trust-simulated", "--ca-key-type", "mldsa65")
    try:
        status, body = served.request("GET", "/v1/ca")
    finally:
        served.stop()
    assert status == 200
    ca_cert = x509.load_pem_x509_certificate(body)
    assert isinstance(ca_cert.public_key(), mldsa.MLDSA65PublicKey)
    assert ca_cert.signature_algorithm_oid.dotted_string == "2.16.840.1.101.3.4.3.18"
    ca_cert.verify_directly_issued_by(ca_cert)
    refused = cli(env, "service", "serve", "--home", str(home), "--listen", "127.0.0.1:0",
                  "--ca-key-type", "p384")
    lines = refused.stderr.decode().strip().splitlines()
    assert refused.returncode != 0 and len(lines) == 1, lines
    assert "--ca-key-type p384: the CA in" in lines[0] and "already has a mldsa65 key" in lines[0]
    assert ServiceCa.load_or_create(home).key_type == "mldsa65"  # untouched


def test_an_mldsa65_ca_signs_certificates_and_crls_with_mldsa65(tmp_path):
    ca = ServiceCa.load_or_create(tmp_path / "home", "mldsa65")
    key = generate_key("p256")
    issued = ca.issue(key.public_key(), SUBJECT, lifetime=dt.timedelta(hours=1),
                      result=RESULT, crl_url=CRL_URL, now=NOW)
    issued.verify_directly_issued_by(ca.certificate)
    assert issued.signature_algorithm_oid == ca.certificate.signature_algorithm_oid
    crl = ca.crl([Revoked(issued.serial_number, NOW)], now=NOW,
                 next_update=NOW + dt.timedelta(hours=1))
    assert crl.is_signature_valid(ca.certificate.public_key())
    assert crl.get_revoked_certificate_by_serial_number(issued.serial_number) is not None
