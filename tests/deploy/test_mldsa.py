"""ML-DSA keep identities, post-attestation: the key made in the keep, nonce = SHA-512 of
its DER SubjectPublicKeyInfo, the evidence in an ML-DSA-signed self-signed certificate,
served over TLS 1.3 with X25519MLKEM768 and checked by ``deploy`` (signature and binding),
under every simulated TEE; the refusals: an altered signature, a nonce hashed for another
key type, a certificate over what a TLS client accepts. Each refusal leaves the keep with
zero workload bytes."""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from attestcall.deploy import deploy
from attestcall.deploy.identity import (
    KeepIdentity,
    attest,
    build_certificate,
    check_binding,
    evidence_from_certificate,
    make_identity,
)
from attestcall.deploy.keys import MLDSA_KEY_TYPES, generate_key, nonce_with, spki_der
from attestcall.deploy.server import ServerSettings
from attestcall.deploy.tenant import DeployRefused
from attestcall.keep.platforms import open_keep
from attestcall.tees import registry
from attestcall.tls import MAX_CERTIFICATE_LIST
from tests.deploy.conftest import TECHNOLOGY, running_keep, settled

ALL_TEES = ("none", "sgx-sim", "snp-sim", "tdx-sim", "cca-sim")
SIGNATURE_OIDS = {"mldsa44": "2.16.840.1.101.3.4.3.17", "mldsa65": "2.16.840.1.101.3.4.3.18",
                  "mldsa87": "2.16.840.1.101.3.4.3.19"}


def run(address, workload, **options) -> tuple[int, list]:
    seen: list = []
    status = deploy(address, workload, [], trust_simulated=True, allow_none=True,
                    stdout=io.BytesIO(), stderr=io.BytesIO(), on_trusted=seen.append,
                    **options)
    return status, seen


def refused(address, workload, **options) -> DeployRefused:
    with pytest.raises(DeployRefused) as caught:
        run(address, workload, **options)
    return caught.value


@pytest.mark.parametrize("key_type", MLDSA_KEY_TYPES)
@pytest.mark.parametrize("tee", ALL_TEES)
def test_an_mldsa_keep_is_deployed_to_under_every_tee(tee, key_type, workload):
    with running_keep(tee, ServerSettings(key_type=key_type)) as server:
        identity = server.identity
        certificate = identity.certificate
        assert certificate.signature_algorithm_oid.dotted_string == SIGNATURE_OIDS[key_type]
        certificate.verify_directly_issued_by(certificate)
        technology, evidence = evidence_from_certificate(certificate)
        assert technology == TECHNOLOGY[tee]
        check_binding(certificate, evidence, technology)
        if tee != "none":
            report_data = registry().by_id(technology).report_data(evidence)
            assert report_data == hashlib.sha512(spki_der(certificate.public_key())).digest()
        status, seen = run(server.address, workload, key_type=key_type)
        assert status == 40 + TECHNOLOGY[tee]
        (connection,) = seen
        assert (connection.group, connection.key_type) == ("X25519MLKEM768", key_type)
        assert settled(server).workloads_run == 1


# ------------------------------------------------------------------------- refusals


def altered_signature(identity: KeepIdentity) -> KeepIdentity:
    """The same certificate with one byte of its ML-DSA signature flipped (the last byte
    of the DER is the signature's)."""
    der = bytearray(identity.certificate_der)
    der[-1] ^= 0x01
    certificate = x509.load_der_x509_certificate(bytes(der))
    return KeepIdentity(identity.private_key, certificate, identity.technology,
                        identity.evidence)


@pytest.mark.parametrize("tee", ("sgx-sim", "snp-sim", "tdx-sim"))
def test_an_altered_mldsa_signature_is_refused(tee, workload):
    with open_keep(tee, b"") as keep:
        genuine = make_identity(keep.source, "mldsa65")
    with running_keep(tee, keep_identity=altered_signature(genuine)) as server:
        error = refused(server.address, workload)
        assert "not validly self-signed with its mldsa65 key" in str(error)
        assert "signature does not verify" in str(error)
        assert settled(server).workload_bytes == 0


def nonce_hashed_with(tee: str, key_type: str, algorithm) -> KeepIdentity:
    """A keep's genuine evidence for its ``key_type`` key, but the nonce ``algorithm`` of
    the SPKI (what a keep following another key type's rule would ask for)."""
    key = generate_key(key_type)
    with open_keep(tee, b"") as keep:
        technology, evidence = attest(keep.source,
                                      nonce_with(algorithm, spki_der(key.public_key())))
    return KeepIdentity(key, build_certificate(key, technology, evidence), technology,
                        evidence)


@pytest.mark.parametrize("tee", ("sgx-sim", "tdx-sim"))
def test_a_nonce_hashed_for_another_key_type_is_refused(tee, workload):
    with running_keep(tee, keep_identity=nonce_hashed_with(tee, "mldsa65",
                                                           hashes.SHA384)) as server:
        error = refused(server.address, workload)
        assert str(error) == ("the keep is not trusted: the evidence binds this "
                              "certificate's mldsa65 key with SHA384, but a mldsa65 key "
                              "binds with SHA512")
        assert settled(server).workload_bytes == 0
    # and the other way round: a P-256 key whose nonce is ML-DSA's SHA-512
    with running_keep(tee, keep_identity=nonce_hashed_with(tee, "p256",
                                                           hashes.SHA512)) as server:
        error = refused(server.address, workload)
        assert "binds this certificate's p256 key with SHA512, but a p256 key binds with " \
            "SHA256" in str(error)
        assert settled(server).workload_bytes == 0


def test_the_cli_refuses_an_altered_signature_in_one_line(workload, tmp_path):
    """Through the command line: exit 125, the reason on one line, no traceback."""
    with open_keep("sgx-sim", b"") as keep:
        genuine = make_identity(keep.source, "mldsa44")
    module = tmp_path / "w.wat"
    module.write_bytes(workload)
    with running_keep("sgx-sim", keep_identity=altered_signature(genuine)) as server:
        host, port = server.address
        result = subprocess.run(
            [sys.executable, "-m", "attestcall", "deploy", "--keep", f"{host}:{port}",
             "--trust-simulated", str(module)], capture_output=True, text=True, timeout=120)
        assert settled(server).workload_bytes == 0
    assert result.returncode == 125
    assert "Traceback" not in result.stderr
    reasons = [line for line in result.stderr.splitlines() if line.startswith("  - ")]
    assert len(reasons) == 1 and "not validly self-signed with its mldsa44 key" in reasons[0]


# ---------------------------------------------------------------- certificate sizes


def test_the_largest_tdx_quote_with_an_mldsa87_key_fits_what_tls_clients_accept(workload):
    """The TDX simulator's largest quote (v5: the TD 1.5 body) and ML-DSA-87 (the largest
    key and signature): the certificate is deployed to over TLS, and is well under
    OpenSSL's limit on a peer's certificate list."""
    with running_keep("tdx-sim", ServerSettings(key_type="mldsa87"),
                      quote_version=5) as server:
        certificate_size = len(server.identity.certificate_der)
        assert len(server.identity.evidence) > 4 * 1024  # a real quote, PCK chain inside
        assert certificate_size < MAX_CERTIFICATE_LIST // 4
        status, seen = run(server.address, workload, key_type="mldsa87")
        assert status == 44 and seen[0].key_type == "mldsa87"


def test_a_certificate_over_the_limit_fails_the_handshake(workload):
    """What the limit means: a keep certificate over it (the evidence bloated with an
    extra extension) is refused by the tenant's TLS before anything is sent."""
    key = generate_key("mldsa87")
    with open_keep("tdx-sim", b"") as keep:
        genuine = make_identity(keep.source, "mldsa87")
    oid = x509.ObjectIdentifier("1.3.6.1.4.1.99999.1")
    padded = (x509.CertificateBuilder().subject_name(genuine.certificate.subject)
              .issuer_name(genuine.certificate.issuer).public_key(key.public_key())
              .serial_number(1).not_valid_before(genuine.certificate.not_valid_before_utc)
              .not_valid_after(genuine.certificate.not_valid_after_utc)
              .add_extension(x509.UnrecognizedExtension(oid, bytes(MAX_CERTIFICATE_LIST)),
                             critical=False)
              .sign(key, None))
    assert len(padded.public_bytes(serialization.Encoding.DER)) > MAX_CERTIFICATE_LIST
    identity = KeepIdentity(key, padded, genuine.technology, genuine.evidence)
    with running_keep("tdx-sim", keep_identity=identity) as server:
        error = refused(server.address, workload)
        assert "TLS handshake with the keep failed" in str(error)
        assert "excessive message size" in str(error)
        assert settled(server).workload_bytes == 0
