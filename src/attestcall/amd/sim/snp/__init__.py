"""A simulated AMD SEV-SNP machine that follows the real guest-request flow, byte for byte.

One concept a module:

- :mod:`.products`: Milan, Genoa, Turin (:class:`Product`) and :class:`Tcb` layouts.
- :mod:`.keys`: what is derived rather than stored (chip secret and id, VCEK, VLEK).
- :mod:`.certs`: AMD-shaped certificates (ARK -> ASK -> VCEK, ARK -> ASVK -> VLEK) and the
  GHCB certificate table; every subject SIMULATED.
- :mod:`.state`: the platform on disk under ``sim_home()/snp/`` (:func:`load_state`,
  :func:`create_state`, :func:`describe_state`); each product's RSA-4096 chain is made
  on its first use.
- :mod:`.launch`: :class:`GuestLaunch` and :class:`GuestPolicy`, what the firmware records
  at launch; :func:`measure_payload`.
- :mod:`.psp`: :class:`SimulatedPsp`, answering encrypted SNP guest messages with signed
  reports.
- :mod:`.platform`: :func:`snp_platform`, a chip + signing key + certificate table.

The guest-message format itself (real, not simulated) is
:mod:`attestcall.amd.formats.guest_message`. Its state is the ``snp`` folder of the
simulated-platform home (the SNP plugin record's ``sim_state``).
"""

from attestcall.amd.sim.snp.launch import GuestLaunch, GuestPolicy, measure_payload
from attestcall.amd.sim.snp.platform import SnpPlatform, snp_platform
from attestcall.amd.sim.snp.products import PRODUCTS, Product, Tcb, UnknownProduct, product
from attestcall.amd.sim.snp.psp import Chip, GuestRequestRefused, Signer, SimulatedPsp
from attestcall.amd.sim.snp.state import (
    DEFAULT_CSP_ID,
    ProductChain,
    SnpState,
    ark_copy_name,
    create_state,
    describe_state,
    load_state,
    read_state,
)

__all__ = [
    "DEFAULT_CSP_ID",
    "PRODUCTS",
    "Chip",
    "GuestLaunch",
    "GuestPolicy",
    "GuestRequestRefused",
    "Product",
    "ProductChain",
    "Signer",
    "SimulatedPsp",
    "SnpPlatform",
    "SnpState",
    "Tcb",
    "UnknownProduct",
    "ark_copy_name",
    "create_state",
    "describe_state",
    "load_state",
    "measure_payload",
    "product",
    "read_state",
    "snp_platform",
]
