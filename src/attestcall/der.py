"""A small, strict DER encoder and decoder.

Only what attestcall needs (the Intel SGX PCK certificate extension, AMD's VCEK/VLEK
extensions, the outer shape of certificates and CRLs): BOOLEAN, INTEGER, OCTET STRING,
OBJECT IDENTIFIER, ENUMERATED, IA5String and SEQUENCE, single-byte tags, definite lengths.
:func:`header` and :func:`spans` locate elements in place, without copying, for callers
that only slice. Decoding is strict: truncated input, trailing bytes, non-minimal lengths
or integers, indefinite lengths and high tag numbers all raise :class:`DerError`.

Certificates and CRLs themselves are parsed and verified by ``cryptography``.
"""

from __future__ import annotations

from dataclasses import dataclass

from attestcall.errors import AttestcallError

BOOLEAN = 0x01
INTEGER = 0x02
OCTET_STRING = 0x04
OBJECT_IDENTIFIER = 0x06
ENUMERATED = 0x0A
IA5_STRING = 0x16
SEQUENCE = 0x30

_TAG_NAMES = {
    BOOLEAN: "BOOLEAN",
    INTEGER: "INTEGER",
    OCTET_STRING: "OCTET STRING",
    OBJECT_IDENTIFIER: "OBJECT IDENTIFIER",
    ENUMERATED: "ENUMERATED",
    IA5_STRING: "IA5String",
    SEQUENCE: "SEQUENCE",
}


class DerError(AttestcallError, ValueError):
    """Bytes that are not the strict DER this module accepts, or a value it cannot encode."""


def tag_name(tag: int) -> str:
    return _TAG_NAMES.get(tag, f"tag {tag:#04x}")


# ---------------------------------------------------------------------------- encoding


def encode_length(length: int) -> bytes:
    """Definite length: short form below 128, else minimal long form."""
    if length < 0:
        raise DerError("negative length")
    if length < 0x80:
        return bytes([length])
    body = length.to_bytes((length.bit_length() + 7) // 8, "big")
    if len(body) > 0x7E:
        raise DerError("length too large")
    return bytes([0x80 | len(body)]) + body


def encode_tlv(tag: int, value: bytes) -> bytes:
    return bytes([tag]) + encode_length(len(value)) + value


def _encode_signed(value: int) -> bytes:
    # Minimal two's complement: the fewest bytes that keep the sign bit right.
    magnitude = value if value >= 0 else ~value
    length = (magnitude.bit_length() + 8) // 8
    return value.to_bytes(length, "big", signed=True)


def encode_integer(value: int) -> bytes:
    return encode_tlv(INTEGER, _encode_signed(value))


def encode_enumerated(value: int) -> bytes:
    return encode_tlv(ENUMERATED, _encode_signed(value))


def encode_boolean(value: bool) -> bytes:
    return encode_tlv(BOOLEAN, b"\xff" if value else b"\x00")


def encode_octet_string(value: bytes) -> bytes:
    return encode_tlv(OCTET_STRING, bytes(value))


def encode_ia5_string(text: str) -> bytes:
    """An IA5String: ASCII only (:class:`DerError` otherwise)."""
    try:
        body = text.encode("ascii")
    except UnicodeEncodeError as exc:
        raise DerError(f"IA5String must be ASCII: {text!r}") from exc
    return encode_tlv(IA5_STRING, body)


def _encode_base128(arc: int) -> bytes:
    out = [arc & 0x7F]
    arc >>= 7
    while arc:
        out.append(0x80 | (arc & 0x7F))
        arc >>= 7
    return bytes(reversed(out))


def encode_oid(dotted: str) -> bytes:
    try:
        arcs = [int(part) for part in dotted.split(".")]
    except ValueError as exc:
        raise DerError(f"not a dotted OID: {dotted!r}") from exc
    if len(arcs) < 2 or arcs[0] > 2 or any(a < 0 for a in arcs) or (arcs[0] < 2 and arcs[1] > 39):
        raise DerError(f"not a valid OID: {dotted!r}")
    body = _encode_base128(arcs[0] * 40 + arcs[1]) + b"".join(_encode_base128(a) for a in arcs[2:])
    return encode_tlv(OBJECT_IDENTIFIER, body)


def encode_sequence(*items: bytes) -> bytes:
    """A SEQUENCE of already-encoded elements."""
    return encode_tlv(SEQUENCE, b"".join(items))


# ---------------------------------------------------------------------------- decoding


@dataclass(frozen=True)
class Tlv:
    """One decoded element: its tag and its content octets (children still encoded)."""

    tag: int
    value: bytes

    def _expect(self, tag: int) -> None:
        if self.tag != tag:
            raise DerError(f"expected {tag_name(tag)}, found {tag_name(self.tag)}")

    def children(self) -> list[Tlv]:
        """The elements of a SEQUENCE."""
        self._expect(SEQUENCE)
        return decode_all(self.value)

    def as_integer(self) -> int:
        self._expect(INTEGER)
        return _decode_signed(self.value, "INTEGER")

    def as_enumerated(self) -> int:
        self._expect(ENUMERATED)
        return _decode_signed(self.value, "ENUMERATED")

    def as_boolean(self) -> bool:
        self._expect(BOOLEAN)
        if self.value == b"\xff":
            return True
        if self.value == b"\x00":
            return False
        raise DerError("BOOLEAN must be one byte, 0x00 or 0xFF")

    def as_octet_string(self) -> bytes:
        self._expect(OCTET_STRING)
        return self.value

    def as_ia5_string(self) -> str:
        self._expect(IA5_STRING)
        if any(byte > 0x7F for byte in self.value):
            raise DerError("IA5String is not ASCII")
        return self.value.decode("ascii")

    def as_oid(self) -> str:
        self._expect(OBJECT_IDENTIFIER)
        return _decode_oid(self.value)


def _decode_signed(content: bytes, what: str) -> int:
    if not content:
        raise DerError(f"empty {what}")
    if len(content) > 1 and (
        (content[0] == 0x00 and content[1] < 0x80) or (content[0] == 0xFF and content[1] >= 0x80)
    ):
        raise DerError(f"{what} is not minimally encoded")
    return int.from_bytes(content, "big", signed=True)


def _decode_oid(content: bytes) -> str:
    if not content:
        raise DerError("empty OBJECT IDENTIFIER")
    if content[-1] & 0x80:
        raise DerError("OBJECT IDENTIFIER ends inside an arc")
    arcs: list[int] = []
    value = 0
    start = True
    for byte in content:
        if start and byte == 0x80:
            raise DerError("OBJECT IDENTIFIER arc is not minimally encoded")
        value = (value << 7) | (byte & 0x7F)
        start = not byte & 0x80
        if start:
            arcs.append(value)
            value = 0
    first = arcs[0]
    if first < 40:
        head = [0, first]
    elif first < 80:
        head = [1, first - 40]
    else:
        head = [2, first - 80]
    return ".".join(str(a) for a in head + arcs[1:])


def header(data: bytes, pos: int = 0, limit: int | None = None) -> tuple[int, int, int]:
    """(tag, content start, content end) of the element at ``pos`` in ``data[:limit]``,
    without copying anything: the one place lengths and tags are checked."""
    if limit is None:
        limit = len(data)
    if pos + 2 > limit:
        raise DerError("truncated: no room for tag and length")
    tag = data[pos]
    if tag & 0x1F == 0x1F:
        raise DerError("high tag numbers are not supported")
    first = data[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    elif first == 0x80:
        raise DerError("indefinite length is not DER")
    else:
        count = first & 0x7F
        if count == 0x7F:
            raise DerError("reserved length octet")
        if pos + count > limit:
            raise DerError("truncated length")
        if data[pos] == 0:
            raise DerError("length has a leading zero byte")
        length = int.from_bytes(data[pos : pos + count], "big")
        if length < 0x80:
            raise DerError("long-form length for a value below 128")
        pos += count
    end = pos + length
    if end > limit:
        raise DerError(f"truncated: {tag_name(tag)} needs {length} bytes, {limit - pos} left")
    return tag, pos, end


def spans(data: bytes, start: int, end: int) -> list[tuple[int, int, int, int]]:
    """(tag, element start, content start, element end) of each element filling
    ``data[start:end]`` (a SEQUENCE's content), without copying."""
    out = []
    pos = start
    while pos < end:
        tag, content, after = header(data, pos, end)
        out.append((tag, pos, content, after))
        pos = after
    return out


def decode_one(data: bytes, offset: int = 0) -> tuple[Tlv, int]:
    """Decode the element at ``offset``; return it and the offset just past it."""
    data = bytes(data)
    tag, start, end = header(data, offset)
    return Tlv(tag, data[start:end]), end


def decode(data: bytes) -> Tlv:
    """Decode exactly one element spanning all of ``data``; trailing bytes are an error."""
    tlv, end = decode_one(data)
    if end != len(data):
        raise DerError(f"{len(data) - end} trailing bytes after {tag_name(tlv.tag)}")
    return tlv


def decode_all(data: bytes) -> list[Tlv]:
    """Decode consecutive elements filling all of ``data`` (a SEQUENCE's content)."""
    items: list[Tlv] = []
    offset = 0
    while offset < len(data):
        tlv, offset = decode_one(data, offset)
        items.append(tlv)
    return items
