"""The simulated AMD platform on disk, and the shapes of its certificates."""

from __future__ import annotations

import stat

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from attestcall import simstate
from attestcall.amd.formats import certs as amdcerts
from attestcall.amd.sim import snp as snp_sim
from attestcall.errors import SimStateError


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_state_layout_and_modes() -> None:
    state = snp_sim.load_state()
    state.chain(snp_sim.product("milan"))
    folder = state.folder
    assert mode(folder) == 0o700 and mode(folder / "master.secret") == 0o600
    assert mode(folder / "milan") == 0o700
    for key in ("ark.key.pem", "ask.key.pem", "asvk.key.pem"):
        assert mode(folder / "milan" / key) == 0o600
    ark = x509.load_pem_x509_certificate((folder / "ark_milan.pem").read_bytes())
    assert ark == state.chain(snp_sim.product("milan")).ark
    assert folder == simstate.sim_home().resolve() / "snp"


def test_the_chain_is_shaped_like_amds() -> None:
    chain = snp_sim.load_state().chain(snp_sim.product("genoa"))
    for cert in (chain.ark, chain.ask, chain.asvk):
        key = cert.public_key()
        assert isinstance(key, rsa.RSAPublicKey) and key.key_size == 4096
        assert cert.signature_algorithm_oid == x509.oid.SignatureAlgorithmOID.RSASSA_PSS
        assert isinstance(cert.signature_hash_algorithm, hashes.SHA384)
        params = cert.signature_algorithm_parameters
        assert isinstance(params, padding.PSS)
        assert "SIMULATED" in cert.subject.rfc4514_string()
    assert chain.ark.subject == chain.ark.issuer
    chain.ask.verify_directly_issued_by(chain.ark)
    chain.asvk.verify_directly_issued_by(chain.ark)
    cn = x509.oid.NameOID.COMMON_NAME
    assert chain.ark.subject.get_attributes_for_oid(cn)[0].value == "ARK-Genoa SIMULATED"
    assert chain.ask.subject.get_attributes_for_oid(cn)[0].value == "SEV-Genoa SIMULATED"
    assert chain.asvk.subject.get_attributes_for_oid(cn)[0].value == "SEV-VLEK-Genoa SIMULATED"


@pytest.mark.parametrize("product, hwid_size", [("milan", 64), ("turin", 8)])
def test_vcek_extensions(product: str, hwid_size: int) -> None:
    platform = snp_sim.snp_platform(product)
    vcek = platform.vek
    key = vcek.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp384r1"
    ext = amdcerts.vek_extensions(vcek)
    tcb = platform.chip.reported_tcb
    assert (ext.bootloader, ext.tee, ext.snp, ext.microcode) == (tcb.bootloader, tcb.tee,
                                                                  tcb.snp, tcb.microcode)
    assert ext.hwid == platform.chip.chip_id and len(ext.hwid) == hwid_size
    assert ext.fmc == tcb.fmc and ext.csp_id is None
    assert ext.product == platform.chip.product.name
    assert all(not e.critical for e in vcek.extensions)
    vcek.verify_directly_issued_by(snp_sim.load_state().chain(platform.chip.product).ask)


def test_vlek_extensions_name_the_provider_not_the_chip() -> None:
    platform = snp_sim.snp_platform("milan", vlek=True)
    ext = amdcerts.vek_extensions(platform.vek)
    assert ext.hwid is None and ext.csp_id == snp_sim.DEFAULT_CSP_ID
    platform.vek.verify_directly_issued_by(snp_sim.load_state().chain(
        snp_sim.product("milan")).asvk)
    entries = amdcerts.parse_table(platform.certificate_table)
    assert [e.name for e in entries] == ["VLEK", "ASK", "ARK"]  # the ASVK under the ASK GUID


def test_certificate_table_uses_amds_guids() -> None:
    entries = amdcerts.parse_table(snp_sim.snp_platform("milan").certificate_table)
    assert [e.guid for e in entries] == [amdcerts.VCEK_GUID, amdcerts.ASK_GUID,
                                         amdcerts.ARK_GUID]


def test_describe_generates_nothing(tmp_path) -> None:
    folder = simstate.platform_dir("snp", snp_sim.create_state, tmp_path)
    text = snp_sim.describe_state(folder)
    assert "not generated yet" in text and "Milan" in text and "Turin" in text
    assert not (folder / "milan").exists()


def test_a_readable_master_secret_is_refused(tmp_path) -> None:
    folder = simstate.platform_dir("snp", snp_sim.create_state, tmp_path)
    (folder / "master.secret").chmod(0o644)
    with pytest.raises(SimStateError, match="readable by others"):
        snp_sim.read_state(folder)


def test_a_tampered_state_is_refused(tmp_path) -> None:
    folder = simstate.platform_dir("snp", snp_sim.create_state, tmp_path)
    (folder / "platform.json").chmod(0o644)
    (folder / "platform.json").write_text("{}")
    with pytest.raises(SimStateError, match="does not match"):
        snp_sim.read_state(folder)


def test_unknown_products_are_refused() -> None:
    with pytest.raises(snp_sim.UnknownProduct):
        snp_sim.product("rome")
