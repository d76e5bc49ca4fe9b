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
    pem = resources.files(__name__).joinpath(INTEL_ROOT_FILE).read_bytes()
    return x509.load_pem_x509_certificate(pem)
