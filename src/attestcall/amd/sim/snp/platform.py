"""A simulated machine ready to attest: a chip of one product line at a TCB, the key its
PSP signs with (the chip's VCEK, or a VLEK the cloud provider loaded) and the certificate
table the host hands out beside each report (what a real host gets from AMD's KDS)."""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509

from attestcall.amd.formats import report as snp
from attestcall.amd.sim.snp import certs, keys
from attestcall.amd.sim.snp.products import Product, Tcb
from attestcall.amd.sim.snp.products import product as find_product
from attestcall.amd.sim.snp.psp import Chip, Signer
from attestcall.amd.sim.snp.state import DEFAULT_CSP_ID, SnpState, load_state


@dataclass(frozen=True)
class SnpPlatform:
    chip: Chip
    signer: Signer
    vek: x509.Certificate  # the VCEK or VLEK certificate of ``signer``
    certificate_table: bytes


def snp_platform(product: str | Product = "milan", *, vlek: bool = False,
                 tcb: Tcb | None = None, csp_id: str = DEFAULT_CSP_ID,
                 state: SnpState | None = None) -> SnpPlatform:
    """The simulated ``product`` machine at ``tcb`` (default: the product's), signing with
    its VCEK or, with ``vlek``, a VLEK. The first use of a product generates its RSA-4096
    chain (slow, once); a new TCB issues a new VCEK certificate (one RSA signature)."""
    if isinstance(product, str):
        product = find_product(product)
    state = state or load_state()
    chain = state.chain(product)
    tcb = tcb or product.default_tcb
    tcb.encode(product.name)  # the TCB fits the product's layout
    chip = Chip(product, state.chip_id(product), tcb, tcb, tcb)
    if vlek:
        key = keys.vlek_key(state.master, product, tcb, csp_id)
        cert = chain.vlek_certificate(tcb, key.public_key(), csp_id)
        signer = Signer(snp.SIGNING_KEY_VLEK, key)
        table = certs.certificate_table(cert, chain.asvk, chain.ark, vlek=True)
    else:
        key = keys.vcek_key(state.chip_secret(product), product, tcb)
        cert = chain.vcek_certificate(tcb, key.public_key(), chip.chip_id)
        signer = Signer(snp.SIGNING_KEY_VCEK, key)
        table = certs.certificate_table(cert, chain.ask, chain.ark)
    return SnpPlatform(chip, signer, cert, table)
