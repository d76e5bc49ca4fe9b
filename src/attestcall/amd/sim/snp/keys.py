"""Keys the simulated secure processor derives rather than stores.

Each simulated chip has a secret derived from the platform's master secret and its product
line. As on real parts, the VCEK is *derived*: from the chip secret and a TCB, so a chip at
another TCB signs with another VCEK (and needs another certificate). The VLEK is not tied
to a chip: it is derived from the platform's VLEK seed, the cloud provider's id and the TCB.
The chip id is derived too (64 bytes; on Turin 8 bytes, zero-padded in reports).

A derived P-384 private key is HKDF-SHA384 output (64 bytes, so the reduction is unbiased)
reduced into 1..n-1 and given to ``ec.derive_private_key``.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from attestcall.amd.sim.snp.products import Product, Tcb

P384_ORDER = int(
    "ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973",
    16,
)
_LABEL = b"attestcall snp-sim "


def _hkdf(secret: bytes, label: str, context: bytes, length: int) -> bytes:
    info = _LABEL + label.encode() + b"\0" + context
    return HKDF(algorithm=hashes.SHA384(), length=length, salt=None, info=info).derive(secret)


def _p384(material: bytes) -> ec.EllipticCurvePrivateKey:
    scalar = int.from_bytes(material, "big") % (P384_ORDER - 1) + 1
    return ec.derive_private_key(scalar, ec.SECP384R1())


def _tcb_context(product: Product, tcb: Tcb) -> bytes:
    return product.name.encode() + b"\0" + tcb.encode(product.name).to_bytes(8, "little")


def chip_secret(master: bytes, product: Product) -> bytes:
    """The secret of the simulated ``product`` chip."""
    return _hkdf(master, "chip secret", product.name.encode(), 48)


def chip_id(master: bytes, product: Product) -> bytes:
    """The chip's id: ``product.hwid_size`` bytes (the VCEK's hwid extension)."""
    return _hkdf(master, "chip id", product.name.encode(), product.hwid_size)


def vcek_key(secret: bytes, product: Product, tcb: Tcb) -> ec.EllipticCurvePrivateKey:
    """The VCEK of the chip with ``secret`` at ``tcb``."""
    return _p384(_hkdf(secret, "VCEK", _tcb_context(product, tcb), 64))


def vlek_key(master: bytes, product: Product, tcb: Tcb,
             csp_id: str) -> ec.EllipticCurvePrivateKey:
    """The VLEK the simulated AMD issues to cloud provider ``csp_id`` for ``tcb``."""
    seed = _hkdf(master, "VLEK seed", b"", 48)
    return _p384(_hkdf(seed, "VLEK", _tcb_context(product, tcb) + csp_id.encode(), 64))
