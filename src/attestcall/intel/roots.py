"""The pinned Intel SGX Root CA (production), shipped as package data."""

from __future__ import annotations

from functools import cache
from importlib import resources

from cryptography import x509

INTEL_ROOT_FILE = "intel_sgx_root_ca.pem"
INTEL_ROOT_SHA256 = "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3"


@cache
def intel_root() -> x509.Certificate:
    """The Intel SGX Root CA certificate, loaded once."""
    # Package data, read without importing attestcall.verifier (where the file still sits).
    data = resources.files("attestcall").joinpath("verifier", "roots", INTEL_ROOT_FILE)
    pem = data.read_bytes()
    return x509.load_pem_x509_certificate(pem)
