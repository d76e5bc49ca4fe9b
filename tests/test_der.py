import pytest

from attestcall import der
from attestcall.errors import AttestcallError


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (0, "020100"),
        (1, "020101"),
        (127, "02017f"),
        (128, "02020080"),
        (255, "020200ff"),
        (256, "02020100"),
        (-1, "0201ff"),
        (-128, "020180"),
        (-129, "0202ff7f"),
    ],
)
def test_integer_known_encodings(value: int, encoded: str) -> None:
    assert der.encode_integer(value).hex() == encoded
    assert der.decode(bytes.fromhex(encoded)).as_integer() == value


@pytest.mark.parametrize(
    ("length", "encoded"),
    [(0, "00"), (127, "7f"), (128, "8180"), (255, "81ff"), (256, "820100"), (65536, "83010000")],
)
def test_length_known_encodings(length: int, encoded: str) -> None:
    assert der.encode_length(length).hex() == encoded
    tlv = der.decode(der.encode_octet_string(bytes(length)))
    assert tlv.as_octet_string() == bytes(length)


def test_sgx_extension_oid_encoding() -> None:
    encoded = der.encode_oid("1.2.840.113741.1.13.1")
    assert encoded.hex() == "06092a864886f84d010d01"
    assert der.decode(encoded).as_oid() == "1.2.840.113741.1.13.1"


@pytest.mark.parametrize("oid", ["0.9", "1.3.6.1.4.1.58270.1.2", "2.999.3", "2.5.29.19"])
def test_oid_round_trip(oid: str) -> None:
    assert der.decode(der.encode_oid(oid)).as_oid() == oid


@pytest.mark.parametrize("bad", ["1", "3.1", "1.40", "1.2.x", ""])
def test_invalid_oid_is_not_encoded(bad: str) -> None:
    with pytest.raises(der.DerError):
        der.encode_oid(bad)


def test_boolean_enumerated_and_sequence() -> None:
    seq = der.encode_sequence(
        der.encode_boolean(True), der.encode_boolean(False), der.encode_enumerated(2)
    )
    assert seq.hex() == "30090101ff0101000a0102"
    items = der.decode(seq).children()
    assert [items[0].as_boolean(), items[1].as_boolean(), items[2].as_enumerated()] == [
        True,
        False,
        2,
    ]


def test_nested_sequence_round_trip() -> None:
    inner = der.encode_sequence(der.encode_oid("1.2.3"), der.encode_integer(300))
    outer = der.encode_sequence(inner, der.encode_octet_string(b"\x01" * 200))
    top = der.decode(outer).children()
    pair = top[0].children()
    assert pair[0].as_oid() == "1.2.3"
    assert pair[1].as_integer() == 300
    assert top[1].as_octet_string() == b"\x01" * 200


def test_every_truncation_is_rejected() -> None:
    encoded = der.encode_sequence(
        der.encode_oid("1.2.840.113741.1.13.1.4"), der.encode_octet_string(bytes(200))
    )
    for cut in range(len(encoded)):
        with pytest.raises(der.DerError):
            der.decode(encoded[:cut]).children()


def test_trailing_bytes_are_rejected() -> None:
    with pytest.raises(der.DerError, match="trailing"):
        der.decode(der.encode_integer(5) + b"\x00")


@pytest.mark.parametrize(
    ("encoded", "why"),
    [
        ("048105" + "00" * 5, "long form below 128"),
        ("04820080" + "00" * 128, "leading zero length byte"),
        ("0480", "indefinite length"),
        ("1f0100", "high tag number"),
        ("04ff", "reserved length octet"),
        ("0484ffffffff", "truncated by huge length"),
    ],
)
def test_malformed_lengths_and_tags(encoded: str, why: str) -> None:
    with pytest.raises(der.DerError):
        der.decode(bytes.fromhex(encoded))


@pytest.mark.parametrize("encoded", ["02020001", "0202ff80", "0200", "0a020005"])
def test_non_minimal_or_empty_integers(encoded: str) -> None:
    tlv = der.decode(bytes.fromhex(encoded))
    with pytest.raises(der.DerError):
        tlv.as_enumerated() if tlv.tag == der.ENUMERATED else tlv.as_integer()


@pytest.mark.parametrize("encoded", ["010101", "010100ff", "0100"])
def test_boolean_must_be_00_or_ff(encoded: str) -> None:
    with pytest.raises(der.DerError):
        der.decode(bytes.fromhex(encoded)).as_boolean()


@pytest.mark.parametrize("encoded", ["06022a80", "06032a8001", "0600"])
def test_malformed_oids(encoded: str) -> None:
    with pytest.raises(der.DerError):
        der.decode(bytes.fromhex(encoded)).as_oid()


def test_wrong_type_is_rejected() -> None:
    tlv = der.decode(der.encode_integer(1))
    with pytest.raises(der.DerError, match="expected OCTET STRING, found INTEGER"):
        tlv.as_octet_string()
    with pytest.raises(der.DerError):
        tlv.as_enumerated()
    with pytest.raises(der.DerError):
        tlv.children()


def test_error_type() -> None:
    assert issubclass(der.DerError, AttestcallError)
    assert issubclass(der.DerError, ValueError)
