"""SEV and AMD certificate formats: layout, strict parsing, signatures, the platform chain."""

from __future__ import annotations

import struct
from dataclasses import replace

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from attestcall.amd.formats import sev_cert as sc
from attestcall.amd.sim import sev as sev_sim


@pytest.fixture(scope="module")
def rsa2048() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def chain() -> sc.PlatformChain:
    return sev_sim.load_state().chain


def test_layout_offsets() -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    cert = sc.sign(sc.new_certificate(sc.USAGE_PEK, sc.ALGO_ECDSA_SHA256, key.public_key(),
                                      0, 24), sc.USAGE_PEK, key)
    raw = cert.pack()
    assert len(raw) == 0x824 == sc.CERT_SIZE
    assert struct.unpack_from("<IBBHII", raw, 0) == (1, 0, 24, 0, 0x1002, 0x2)
    assert struct.unpack_from("<I", raw, 0x10) == (sc.CURVE_P384,)
    numbers = key.public_key().public_numbers()
    assert raw[0x14 : 0x14 + 72] == numbers.x.to_bytes(72, "little")
    assert raw[0x5C : 0x5C + 72] == numbers.y.to_bytes(72, "little")
    assert not any(raw[0xA4:0x414])  # reserved tail of the key field
    assert struct.unpack_from("<II", raw, 0x414) == (0x1002, 0x2)  # sig1 usage, algo
    assert struct.unpack_from("<II", raw, 0x61C) == (0x1000, 0)  # sig2 empty
    assert not any(raw[0x624:])
    assert sc.SevCertificate.parse(raw) == cert
    sc.verify(cert, sc.USAGE_PEK, key.public_key())


def test_roundtrip_of_the_simulated_chain(chain) -> None:
    data = chain.pack()
    assert len(data) == 4 * 0x824 + 2 * (0x40 + 3 * 512)
    assert sc.PlatformChain.parse(data) == chain
    assert chain.verify([chain.ark.pack()]) == chain.pdh
    assert chain.ark.key_id.startswith(b"SIMULATED") and chain.ask.key_id.startswith(b"SIMULATED")
    assert chain.ask.certifying_id == chain.ark.key_id == chain.ark.certifying_id
    assert {s.usage for s in chain.pek.slots()} == {sc.USAGE_CEK, sc.USAGE_OCA}
    assert chain.cek.sig1.usage == sc.USAGE_ASK and chain.cek.sig1.algo == sc.ALGO_RSA_SHA384
    assert chain.pdh.algo == sc.ALGO_ECDH_SHA256


def test_untrusted_ark_is_refused(chain) -> None:
    with pytest.raises(sc.ChainInvalid, match="not a trusted root"):
        chain.verify([])


@pytest.mark.parametrize("which", ["pdh", "pek", "oca", "cek"])
def test_a_tampered_sev_certificate_breaks_the_chain(chain, which) -> None:
    data = bytearray(chain.pack())
    index = ["pdh", "pek", "oca", "cek"].index(which)
    data[index * 0x824 + 0x20] ^= 0x01  # a byte of Qx: still parses only if on the curve
    try:
        tampered = sc.PlatformChain.parse(bytes(data))
    except sc.SevCertError:
        return  # not a point on the curve: refused at parsing
    with pytest.raises(sc.ChainInvalid):
        tampered.verify([chain.ark.pack()])


@pytest.mark.parametrize("which", ["pdh", "pek", "oca", "cek"])
def test_a_tampered_version_field_breaks_the_chain(chain, which) -> None:
    cert = getattr(chain, which)
    tampered = replace(chain, **{which: replace(cert, api_minor=cert.api_minor ^ 1)})
    with pytest.raises(sc.ChainInvalid):
        tampered.verify([chain.ark.pack()])


def test_a_tampered_signature_breaks_the_chain(chain) -> None:
    slot = chain.pdh.sig1
    bad = replace(slot, signature=bytes([slot.signature[0] ^ 1]) + slot.signature[1:])
    with pytest.raises(sc.ChainInvalid, match="PEK signature"):
        replace(chain, pdh=replace(chain.pdh, sig1=bad)).verify([chain.ark.pack()])


def test_a_tampered_ask_breaks_the_chain(chain) -> None:
    ask = replace(chain.ask, usage=sc.USAGE_ASK, key_id=b"X" + chain.ask.key_id[1:])
    with pytest.raises(sc.ChainInvalid):
        replace(chain, ask=ask).verify([chain.ark.pack()])
    raw = bytearray(chain.ask.pack())
    raw[0x40 + 600] ^= 0x80  # a modulus byte
    with pytest.raises(sc.ChainInvalid):
        replace(chain, ask=sc.AmdCertificate.parse(bytes(raw))).verify([chain.ark.pack()])


def test_pek_missing_its_oca_signature(chain) -> None:
    slots = [s if s.usage != sc.USAGE_OCA else sc.EMPTY_SLOT for s in chain.pek.slots()]
    pek = replace(chain.pek, sig1=slots[0], sig2=slots[1])
    with pytest.raises(sc.ChainInvalid, match="no signature by the OCA"):
        replace(chain, pek=pek).verify([chain.ark.pack()])


def test_swapped_roles_are_refused(chain) -> None:
    with pytest.raises(sc.ChainInvalid, match="expected a PEK"):
        replace(chain, pek=chain.oca).verify([chain.ark.pack()])


@pytest.mark.parametrize("mutate, message", [
    (lambda b: b[:-1], "0x824|2084"),
    (lambda b: struct.pack("<I", 2) + b[4:], "version"),
    (lambda b: b[:6] + b"\x01" + b[7:], "reserved"),
    (lambda b: b[:8] + struct.pack("<I", 0x13) + b[12:], "usage"),
    (lambda b: b[:12] + struct.pack("<I", 0x1) + b[16:], "algorithm"),
    (lambda b: b[:16] + struct.pack("<I", 3) + b[20:], "curve"),
    (lambda b: b[:0x100] + b"\x01" + b[0x101:], "padding"),
    (lambda b: b[:0x700] + b"\x01" + b[0x701:], "empty signature slot"),
])
def test_strict_parsing(chain, mutate, message) -> None:
    with pytest.raises(sc.SevCertError, match=message):
        sc.SevCertificate.parse(mutate(chain.pdh.pack()))


def test_amd_format_layout_and_strictness(rsa2048) -> None:
    key_id = bytes(range(16))
    cert = sc.sign_amd(sc.new_amd_certificate(sc.USAGE_ARK, key_id, key_id,
                                              rsa2048.public_key()), rsa2048)
    raw = cert.pack()
    assert len(raw) == 0x40 + 3 * 256
    assert struct.unpack_from("<I16s16sI16sII", raw, 0) == (1, key_id, key_id, 0, bytes(16),
                                                           2048, 2048)
    assert raw[0x40 : 0x40 + 256] == (65537).to_bytes(256, "little")
    assert raw[0x140 : 0x240] == rsa2048.public_key().public_numbers().n.to_bytes(256, "little")
    assert sc.AmdCertificate.parse(raw) == cert
    sc.verify_amd(cert, cert)
    with pytest.raises(sc.SevCertError, match="truncated"):
        sc.AmdCertificate.parse(raw[:-1])
    with pytest.raises(sc.SevCertError, match="after"):
        sc.AmdCertificate.parse(raw + b"\0")
    with pytest.raises(sc.SevCertError, match="2048 or 4096"):
        sc.AmdCertificate.parse(raw[:0x38] + struct.pack("<I", 24) + raw[0x3C:])
    with pytest.raises(sc.SevCertError, match="usage"):
        sc.AmdCertificate.parse(raw[:0x24] + struct.pack("<I", 5) + raw[0x28:])
    bad = bytearray(raw)
    bad[-1] ^= 1
    with pytest.raises(sc.SignatureInvalid):
        sc.verify_amd(sc.AmdCertificate.parse(bytes(bad)), cert)


def test_rsa_and_sha384_signature_slots(rsa2048) -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    cert = sc.new_certificate(sc.USAGE_CEK, sc.ALGO_ECDSA_SHA384, key.public_key())
    signed = sc.sign(sc.sign(cert, sc.USAGE_ASK, rsa2048, sc.ALGO_RSA_SHA256), sc.USAGE_CEK,
                     key, sc.ALGO_ECDSA_SHA384)
    parsed = sc.SevCertificate.parse(signed.pack())
    sc.verify(parsed, sc.USAGE_ASK, rsa2048.public_key())
    sc.verify(parsed, sc.USAGE_CEK, key.public_key())
    other = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(sc.SignatureInvalid):
        sc.verify(parsed, sc.USAGE_CEK, other.public_key())
    with pytest.raises(sc.SevCertError, match="both signature slots"):
        sc.sign(signed, sc.USAGE_OCA, key)


def test_p256_keys_roundtrip_and_other_curves_refused() -> None:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    field = sc.encode_ecc_key(key)
    assert sc.decode_ecc_key(field).public_numbers() == key.public_numbers()
    with pytest.raises(sc.SevCertError):
        sc.encode_ecc_key(ec.generate_private_key(ec.SECP521R1()).public_key())
