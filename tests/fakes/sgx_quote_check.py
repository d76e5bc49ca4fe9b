"""Checks of a simulated SGX quote that the end-to-end tests share: everything a verifier
would check short of collateral, against the simulated root."""

from __future__ import annotations

import hashlib

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from attestcall.intel.formats.quote import Quote, public_key_from_raw, signature_to_der
from attestcall.intel.sim import sgx as sgx_sim


def seeded_nonce(seed: int) -> bytes:
    return bytes((seed + i) & 0xFF for i in range(64))


def check_quote(data: bytes, nonce: bytes) -> Quote:
    """Parse strictly; REPORTDATA is the nonce; the quote signature verifies with the
    embedded attestation key; the QE report signature with the PCK key; the QE report binds
    the attestation key; PCK -> Platform CA -> simulated root verifies. Raises on any failure."""
    quote = Quote.parse(data)
    assert quote.body.report_data == nonce, "REPORTDATA is not the nonce"
    sig = quote.signature_data
    ecdsa = ec.ECDSA(hashes.SHA256())
    public_key_from_raw(sig.attestation_key).verify(
        signature_to_der(sig.signature), quote.signed_bytes(), ecdsa
    )
    leaf, platform_ca, root = (
        x509.load_pem_x509_certificate(pem) for pem in quote.certification_data.pem_certificates()
    )
    leaf.public_key().verify(
        signature_to_der(sig.qe.qe_report_signature), sig.qe.qe_report.pack(), ecdsa
    )
    binding = hashlib.sha256(sig.attestation_key + sig.qe.qe_auth_data).digest() + bytes(32)
    assert sig.qe.qe_report.report_data == binding, "QE report does not bind the key"
    assert root == sgx_sim.load_state().root_cert, "chain ends elsewhere than the simulated root"
    leaf.verify_directly_issued_by(platform_ca)
    platform_ca.verify_directly_issued_by(root)
    root.verify_directly_issued_by(root)
    return quote
