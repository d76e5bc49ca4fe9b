"""AMD revocation with the simulator's CRLs: each link of a simulated chain revoked in
turn (``attestcall.verify(crl=...)``), the published CRL a verifier trusting the
simulators reads, and CRLs that cannot be used (bad signature, expired, another
product's), which are unusable input, never a silent pass."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

import attestcall
from attestcall.amd.sim import snp as snp_sim
from attestcall.amd.sim.snp.state import crl_copy_name
from attestcall.errors import CollateralError, UsageError
from attestcall.simstate import sim_home
from tests.amd.sim.snp.conftest import make_psp

NONCE = bytes(range(64))


def evidence_of(platform: snp_sim.SnpPlatform) -> bytes:
    return make_psp(platform).report(NONCE) + platform.certificate_table


def pem(crl) -> bytes:
    return crl.public_bytes(Encoding.PEM)


@pytest.fixture
def chain() -> snp_sim.ProductChain:
    return snp_sim.load_state().chain(snp_sim.product("milan"))


@pytest.fixture
def vlek_platform() -> snp_sim.SnpPlatform:
    return snp_sim.snp_platform("milan", vlek=True)


def verdict_with(evidence: bytes, crl: bytes) -> attestcall.Verdict:
    return attestcall.verify(evidence, crl=crl, trust_simulated=True, nonce=NONCE)


def test_a_crl_revoking_nothing_accepts(milan, chain) -> None:
    verdict = verdict_with(evidence_of(milan), pem(chain.crl()))
    assert verdict.accepted, verdict.reasons


@pytest.mark.parametrize("link", ["ASK", "VCEK"])
def test_each_link_of_a_vcek_chain_revoked(milan, chain, link) -> None:
    revoked = chain.ask if link == "ASK" else milan.vek
    verdict = verdict_with(evidence_of(milan), pem(chain.crl([revoked])))
    assert not verdict.accepted
    label = "SEV-Milan SIMULATED" if link == "ASK" else "SEV-VCEK SIMULATED"
    assert verdict.reasons == [
        f"the {link} ({label}) is revoked: the CRL of ARK-Milan SIMULATED lists it "
        f"(since {chain.ark.not_valid_before_utc.date()}, reason key_compromise)"]


@pytest.mark.parametrize("link", ["ASVK", "VLEK"])
def test_each_link_of_a_vlek_chain_revoked(vlek_platform, chain, link) -> None:
    revoked = chain.asvk if link == "ASVK" else vlek_platform.vek
    verdict = verdict_with(evidence_of(vlek_platform), pem(chain.crl([revoked])))
    assert not verdict.accepted
    assert len(verdict.reasons) == 1
    assert verdict.reasons[0].startswith(f"the {link} (")
    assert "is revoked" in verdict.reasons[0]


def test_a_serial_number_is_revoked_only_under_its_issuer(milan, vlek_platform, chain) -> None:
    """The VCEK and the VLEK share serial number 1 (AMD's VCEKs all have 0): revoking the
    VLEK (an entry under the ASVK) must not revoke the VCEK, nor the ASVK the ASK."""
    assert milan.vek.serial_number == vlek_platform.vek.serial_number
    verdict = verdict_with(evidence_of(milan), pem(chain.crl([vlek_platform.vek, chain.asvk])))
    assert verdict.accepted, verdict.reasons


def test_the_published_crl_is_what_trusting_the_simulators_uses(milan, chain) -> None:
    evidence = evidence_of(milan)
    published = sim_home() / "snp" / crl_copy_name(snp_sim.product("milan"))
    assert published.exists()
    kept = published.read_bytes()
    try:
        published.write_bytes(pem(chain.crl([chain.ask])))
        verdict = attestcall.verify(evidence, trust_simulated=True, nonce=NONCE)
        assert not verdict.accepted
        assert verdict.reasons[0].startswith("the ASK (SEV-Milan SIMULATED) is revoked")
    finally:
        published.write_bytes(kept)
    assert attestcall.verify(evidence, trust_simulated=True, nonce=NONCE).accepted


def test_a_crl_that_does_not_verify_is_unusable(milan, chain) -> None:
    der = bytearray(chain.crl().public_bytes(Encoding.DER))
    der[-10] ^= 0x01  # inside the signature
    with pytest.raises(CollateralError, match="does not verify with its key"):
        verdict_with(evidence_of(milan), bytes(der))


def test_an_expired_crl_is_unusable(milan, chain) -> None:
    now = dt.datetime.now(dt.UTC)
    old = chain.crl(this_update=now - dt.timedelta(days=60),
                    next_update=now - dt.timedelta(days=30))
    with pytest.raises(CollateralError, match="CRL of ARK-Milan SIMULATED has expired"):
        verdict_with(evidence_of(milan), pem(old))
    future = chain.crl(this_update=now + dt.timedelta(days=1))
    with pytest.raises(CollateralError, match="not valid before its thisUpdate"):
        verdict_with(evidence_of(milan), pem(future))


def test_another_products_crl_is_unusable(milan) -> None:
    genoa = snp_sim.load_state().chain(snp_sim.product("genoa"))
    with pytest.raises(CollateralError,
                       match="the CRL is ARK-Genoa SIMULATED's, for Genoa; the evidence's "
                             "chain is Milan's"):
        verdict_with(evidence_of(milan), pem(genoa.crl()))


def test_a_crl_of_another_ark_of_the_product_is_unusable(milan, chain) -> None:
    """A real ARK-Milan CRL does not speak for the simulated ARK-Milan's chain."""
    from tests import paths

    real = (paths.DATA / "amd/crl_milan.der").read_bytes()
    with pytest.raises(CollateralError, match="not by the chain's ARK"):
        verdict_with(evidence_of(milan), real)


def test_a_crl_is_for_snp_only() -> None:
    from tests import paths

    quote = (paths.DATA / "intel/sgx_quote_v3.bin").read_bytes()
    with pytest.raises(UsageError, match="CRL is not for SGX quote"):
        attestcall.verify(quote, crl=b"x")


def test_untrusted_simulated_evidence_is_not_checked_for_revocation(milan, chain) -> None:
    """Without --trust-simulated the chain is refused for being simulated; a CRL given
    beside it changes nothing (revocation is checked on a trusted chain only)."""
    verdict = attestcall.verify(evidence_of(milan), crl=pem(chain.crl([chain.ask])))
    assert not verdict.accepted and verdict.simulated
    assert len(verdict.reasons) == 1 and "--trust-simulated" in verdict.reasons[0]


@dataclasses.dataclass(frozen=True)
class Listed:
    """What a CRL entry is made from: a serial number and the issuer it is under."""

    serial_number: int
    issuer: object


def test_the_crl_names_the_vcek_only_under_its_ask(milan, chain) -> None:
    """An entry for the VCEK's serial number directly under the ARK (no certificateIssuer)
    is about a certificate the ARK issued, not the VCEK."""
    bare = chain.crl([Listed(milan.vek.serial_number, chain.ark.subject)])
    assert verdict_with(evidence_of(milan), pem(bare)).accepted
    indirect = chain.crl([Listed(milan.vek.serial_number, chain.ask.subject)])
    assert not verdict_with(evidence_of(milan), pem(indirect)).accepted
