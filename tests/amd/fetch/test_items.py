"""attestcall.amd.fetch.items: each KDS answer checked on its own before a cache keeps it:
AMD's real certificates pass under the pinned keys, another chip's VCEK, a chain of another
product line or an untrusted ARK, and a CRL not signed by the ARK are refused."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from attestcall.amd.fetch import items
from attestcall.amd.formats.certs import load_pem_certificates
from attestcall.amd.sim import snp as snp_sim
from attestcall.errors import CollateralError
from attestcall.pki import load_der_certificate
from tests import paths
from tests.fakes.whitespace_der import ending_in_whitespace

DATA = paths.DATA / "amd"
REPORT = (DATA / "milan_report_v2.bin").read_bytes()
VCEK = (DATA / "milan_report_v2.vcek.der").read_bytes()
OTHER_VCEK = (DATA / "milan_report_v2_debug.vcek.der").read_bytes()
TURIN_VCEK = (DATA / "turin_vcek.der").read_bytes()
MILAN_CHAIN = (DATA / "ask_ark_milan.pem").read_bytes()
GENOA_CHAIN = (DATA / "ask_ark_genoa.pem").read_bytes()
CHIP_ID = REPORT[0x1A0:0x1E0].hex()
KEY = f"Milan/{CHIP_ID}?blSPL=03&teeSPL=00&snpSPL=08&ucodeSPL=115"


@pytest.fixture(scope="module")
def milan(tmp_path_factory) -> snp_sim.state.ProductChain:
    """A simulated Milan chain in a home of its own: the session's shared home may be
    reset by another test between this chain's certificates and its key being read."""
    state = snp_sim.load_state(tmp_path_factory.mktemp("items-home"))
    return state.chain(snp_sim.product("milan"))


def ark_crl(chain, signer: rsa.RSAPrivateKey | None = None) -> bytes:
    """A CRL in the ARK's name, signed by its key (or ``signer``), RSASSA-PSS as AMD's."""
    key = signer or serialization.load_pem_private_key(
        (Path(chain.folder) / "ark.key.pem").read_bytes(), None)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    crl = (x509.CertificateRevocationListBuilder().issuer_name(chain.ark.subject)
           .last_update(now).next_update(now + dt.timedelta(days=7))
           .sign(key, hashes.SHA384(), rsa_padding=padding.PSS(
               padding.MGF1(hashes.SHA384()), padding.PSS.DIGEST_LENGTH)))
    return crl.public_bytes(Encoding.DER)


def test_amds_real_certificates_pass_under_the_pinned_keys():
    kept = items.check("vcek", KEY, VCEK)
    assert kept.body == VCEK
    assert kept.next_update == dt.datetime(2030, 4, 3, 19, 23, 43, tzinfo=dt.UTC)
    assert items.vcek_item_key(load_der_certificate(VCEK)) == KEY
    # PEM is kept as DER; the chain as PEM, ASK then ARK.
    pem = load_der_certificate(VCEK).public_bytes(Encoding.PEM)
    assert items.check("vcek", KEY, pem).body == VCEK
    kept = items.check("cert_chain", "vcek/Milan", MILAN_CHAIN)
    assert [c.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
            for c in load_pem_certificates(kept.body)] == ["SEV-Milan", "ARK-Milan"]
    turin = load_der_certificate(TURIN_VCEK)
    key = items.vcek_item_key(turin)
    assert key.startswith("Turin/") and len(key.split("?")[0]) == len("Turin/") + 16
    assert items.check("vcek", key, TURIN_VCEK).body == TURIN_VCEK


@pytest.mark.parametrize("case, kind, key, body, reason", [
    ("another chip", "vcek", KEY.replace(CHIP_ID[:2], "00", 1), VCEK, "another chip"),
    ("another TCB", "vcek", KEY.replace("snpSPL=08", "snpSPL=09"), VCEK, "snpSPL is 8, not 9"),
    ("another chip's key", "vcek", KEY, OTHER_VCEK, "another chip"),
    ("garbage", "vcek", KEY, b"\x30\x03\x02\x01\x00", "not a usable DER"),
    ("a chain as a VCEK", "vcek", KEY, MILAN_CHAIN, "2 certificates, not one"),
    ("another product's chain", "cert_chain", "vcek/Milan", GENOA_CHAIN,
     "not a trusted Milan ARK"),
    ("the chain reversed", "cert_chain", "vcek/Milan",
     b"".join(reversed([c + b"-----END CERTIFICATE-----\n" for c in
                        MILAN_CHAIN.split(b"-----END CERTIFICATE-----\n")[:2]])),
     "not a trusted Milan ARK"),
    ("an ASK as an ASVK", "cert_chain", "vlek/Milan", MILAN_CHAIN, "is not a ASVK"),
    ("a certificate as a CRL", "crl", "vcek/Milan", VCEK, "not a CRL"),
])
def test_anything_but_the_item_is_refused(case, kind, key, body, reason):
    with pytest.raises(CollateralError, match=reason):
        items.check(kind, key, body)


def test_simulated_keys_pass_only_when_their_ark_is_trusted(milan):
    chain_pem = b"".join(c.public_bytes(Encoding.PEM) for c in (milan.ask, milan.ark))
    with pytest.raises(CollateralError, match="not a trusted Milan ARK"):
        items.check("cert_chain", "vcek/Milan", chain_pem)
    assert items.check("cert_chain", "vcek/Milan", chain_pem, roots=[milan.ark]).body == \
        chain_pem
    asvk_pem = b"".join(c.public_bytes(Encoding.PEM) for c in (milan.asvk, milan.ark))
    assert items.check("cert_chain", "vlek/Milan", asvk_pem, roots=[milan.ark]).body == asvk_pem

    hwid = bytes(range(64))
    vcek = milan.vcek_certificate(snp_sim.Tcb(3, 0, 8, 115),
                                  ec.generate_private_key(ec.SECP384R1()).public_key(), hwid)
    key = items.vcek_item_key(vcek)
    der = vcek.public_bytes(Encoding.DER)
    with pytest.raises(CollateralError, match="not issued by a Milan ASK"):
        items.check("vcek", key, der, roots=[milan.ark])  # its ASK is not pinned
    with pytest.raises(CollateralError, match="not issued by a Milan ASK"):
        items.check("vcek", key, der, signers=[milan.ask])  # its ARK is not trusted
    assert items.check("vcek", key, der, roots=[milan.ark], signers=[milan.ask]).body == der

    crl = ark_crl(milan)
    with pytest.raises(CollateralError, match="not issued and signed by a trusted Milan ARK"):
        items.check("crl", "vcek/Milan", crl)
    kept = items.check("crl", "vlek/Milan", crl, roots=[milan.ark])
    assert kept.body == crl and kept.next_update > dt.datetime.now(dt.UTC)
    forged = ark_crl(milan, rsa.generate_private_key(65537, 2048))
    with pytest.raises(CollateralError, match="not issued and signed"):
        items.check("crl", "vcek/Milan", forged, roots=[milan.ark])
    assert items.crl_product(x509.load_der_x509_crl(crl)) == "Milan"
    assert items.chain_answer([milan.ask, milan.asvk], [milan.ark]) == [
        ("cert_chain", "vcek/Milan", chain_pem), ("cert_chain", "vlek/Milan", asvk_pem)]


def test_a_der_crl_whose_signature_ends_in_a_whitespace_byte_passes_whole(milan):
    key = serialization.load_pem_private_key((Path(milan.folder) / "ark.key.pem").read_bytes(),
                                             None)
    crl = ending_in_whitespace(lambda: ark_crl(milan, key))
    assert items.check("crl", "vcek/Milan", crl, roots=[milan.ark]).body == crl


def test_keys_are_canonical_and_checked():
    spls = {"blSPL": "3", "teeSPL": "0", "snpSPL": "008", "ucodeSPL": "115"}
    assert items.vcek_key("Milan", CHIP_ID.upper(), spls) == KEY
    turin = {**spls, "fmcSPL": "1"}
    assert items.vcek_key("Turin", "ab" * 8, turin).endswith("&fmcSPL=01")
    for product, hwid, given, reason in (
            ("Rome", CHIP_ID, spls, "unknown product"),
            ("Milan", CHIP_ID[:-2], spls, "128 hex digits"),
            ("Turin", CHIP_ID, turin, "16 hex digits"),
            ("Milan", CHIP_ID, {**spls, "fmcSPL": "1"}, "no fmcSPL"),
            ("Turin", "ab" * 8, spls, "lacks fmcSPL"),
            ("Milan", CHIP_ID, {**spls, "snpSPL": "256"}, "0 to 255"),
            ("Milan", CHIP_ID, {**spls, "snpSPL": "-1"}, "0 to 255"),
            ("Milan", CHIP_ID, {**spls, "debug": "1"}, "unknown VCEK parameter")):
        with pytest.raises(CollateralError, match=reason):
            items.vcek_key(product, hwid, given)
    with pytest.raises(CollateralError, match="unknown key family"):
        items.family_key("vxek", "Milan")


def test_upstream_urls():
    assert items.url("https://kdsintf.amd.com/vcek/v1/", "vcek", KEY) == \
        f"https://kdsintf.amd.com/vcek/v1/{KEY}"
    assert items.url("http://127.0.0.1:1", "cert_chain", "vlek/Genoa") == \
        "http://127.0.0.1:1/vlek/v1/Genoa/cert_chain"
    assert items.url("http://127.0.0.1:1", "crl", "vcek/Turin") == \
        "http://127.0.0.1:1/vcek/v1/Turin/crl"
