"""AMD certificates: the GHCB certificate table, the VCEK/VLEK extensions, ``--certs`` input.

The certificate table (GHCB specification, extended guest request; what
``SNP_GET_EXT_REPORT`` and configfs-tsm ``auxblob`` return) is a list of 24-byte entries,
each a GUID (16 bytes, RFC 4122 byte order), an offset u32 and a length u32 (little-endian),
ended by an all-zero entry. Offsets count from the start of the table; the certificates
(DER) follow the entries. Bytes no entry references must be zero (the table comes in
zeroed pages, so the rest of its last page is zero padding); any other byte there is an
error, as unsigned data riding along would be.

VCEK and VLEK certificates carry AMD's extensions under 1.3.6.1.4.1.3704.1: ``.1`` struct
version (INTEGER), ``.2`` product name (IA5String, e.g. "Milan-B0"), ``.3.1`` boot loader,
``.3.2`` TEE, ``.3.3`` SNP, ``.3.8`` microcode and (Turin) ``.3.9`` FMC security patch
levels (INTEGER), ``.4`` hardware id (raw bytes: 64, or 8 on Turin; VCEK only) and ``.5``
CSP id (IA5String; VLEK only).

AMD certificates have serial number 0, which RFC 5280 forbids; ``cryptography`` warns
when it parses one. :func:`load_certificate` is the one place that loads certificates and
silences exactly that warning; nothing here reads or keys on serial numbers.
"""

from __future__ import annotations

import struct
import uuid
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.utils import CryptographyDeprecationWarning

from attestcall import der, pki
from attestcall.amd.formats.crl import PEM_MARK as CRL_PEM_MARK
from attestcall.amd.formats.crl import load_crls
from attestcall.errors import CollateralError, EvidenceError

VCEK_GUID = uuid.UUID("63da758d-e664-4564-adc5-f4b93be8accd")
VLEK_GUID = uuid.UUID("a8074bc2-a25a-483e-aae6-39c045a0b8a1")
ASK_GUID = uuid.UUID("4ab7b379-bbac-4fe4-a02f-05aef327c782")  # also the ASVK
ARK_GUID = uuid.UUID("c0b406a4-a803-4952-9743-3fb6014cd0ae")
GUID_NAMES = {VCEK_GUID: "VCEK", VLEK_GUID: "VLEK", ASK_GUID: "ASK", ARK_GUID: "ARK"}

ENTRY = struct.Struct("<16sII")
_ZERO_ENTRY = bytes(ENTRY.size)

OID_PREFIX = "1.3.6.1.4.1.3704.1"
OID_STRUCT_VERSION = OID_PREFIX + ".1"
OID_PRODUCT_NAME = OID_PREFIX + ".2"
OID_BOOTLOADER = OID_PREFIX + ".3.1"
OID_TEE = OID_PREFIX + ".3.2"
OID_SNP = OID_PREFIX + ".3.3"
OID_MICROCODE = OID_PREFIX + ".3.8"
OID_FMC = OID_PREFIX + ".3.9"
OID_HWID = OID_PREFIX + ".4"
OID_CSP_ID = OID_PREFIX + ".5"



class CertTableError(EvidenceError):
    """A certificate table that is truncated, out of bounds or otherwise malformed."""


# ---------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class TableEntry:
    guid: uuid.UUID
    data: bytes

    @property
    def name(self) -> str:
        return GUID_NAMES.get(self.guid, str(self.guid))


def parse_table(data: bytes) -> list[TableEntry]:
    """Parse a certificate table; an empty input is an empty table."""
    data = bytes(data)
    if not data:
        return []
    headers: list[tuple[uuid.UUID, int, int]] = []
    offset = 0
    while True:
        if offset + ENTRY.size > len(data):
            raise CertTableError(f"SNP certificate table: entry {len(headers)} is truncated "
                                 f"({len(data) - offset} of {ENTRY.size} bytes); "
                                 "no all-zero terminator")
        raw = data[offset:offset + ENTRY.size]
        offset += ENTRY.size
        if raw == _ZERO_ENTRY:
            break
        guid, start, length = ENTRY.unpack(raw)
        headers.append((uuid.UUID(bytes=guid), start, length))
    entries: list[TableEntry] = []
    seen: set[uuid.UUID] = set()
    for index, (guid, start, length) in enumerate(headers):
        name = GUID_NAMES.get(guid, str(guid))
        if guid in seen:
            raise CertTableError(f"SNP certificate table: {name} appears twice")
        seen.add(guid)
        if length == 0:
            raise CertTableError(f"SNP certificate table: entry {index} ({name}) is empty")
        if start < offset:
            raise CertTableError(f"SNP certificate table: entry {index} ({name}) points "
                                 f"inside the entry list (offset {start})")
        if start + length > len(data):
            raise CertTableError(f"SNP certificate table: entry {index} ({name}) runs past "
                                 f"the end ({start}+{length} > {len(data)} bytes)")
        entries.append(TableEntry(guid, data[start:start + length]))
    _check_padding(data, offset, sorted((start, start + length) for _, start, length in headers))
    return entries


def _check_padding(data: bytes, position: int, spans: list[tuple[int, int]]) -> None:
    """Every byte of ``data`` from ``position`` on outside ``spans`` must be zero."""
    for start, end in [*spans, (len(data), len(data))]:
        if start > position and data.count(0, position, start) != start - position:
            raise CertTableError(f"SNP certificate table: bytes {position}..{start - 1} are "
                                 "referenced by no entry and are not zero padding")
        position = max(position, end)


def pack_table(entries: Sequence[tuple[uuid.UUID, bytes]]) -> bytes:
    """Build a certificate table: entries, the zero terminator, then the blobs in order."""
    offset = ENTRY.size * (len(entries) + 1)
    header = b""
    blobs = b""
    for guid, blob in entries:
        header += ENTRY.pack(guid.bytes, offset + len(blobs), len(blob))
        blobs += blob
    return header + _ZERO_ENTRY + blobs


# ---------------------------------------------------------------------------- certificates


# What cryptography raises for malformed certificates: ValueError for bad DER,
# InvalidVersion, UnsupportedAlgorithm, DuplicateExtension, and KeyError from a name
# attribute with an unknown string type (rfc4514_string).
_PARSE_ERRORS = (ValueError, UnsupportedAlgorithm, x509.InvalidVersion, x509.DuplicateExtension,
                 KeyError)


def _checked(cert: x509.Certificate) -> x509.Certificate:
    """``cryptography`` parses some fields lazily: read every one attestcall uses now, so a
    malformed certificate fails here and nowhere later."""
    cert.subject.rfc4514_string()
    cert.issuer.rfc4514_string()
    _ = cert.not_valid_before_utc, cert.not_valid_after_utc
    _ = cert.signature_algorithm_oid, cert.signature_hash_algorithm
    _ = cert.signature_algorithm_parameters
    cert.public_key()
    for extension in cert.extensions:
        _ = extension.value
    return cert


def load_certificate(data: bytes) -> x509.Certificate:
    """Load one DER certificate. AMD's serial number 0 is accepted deliberately."""
    try:
        return _checked(pki.load_der_certificate(data))
    except _PARSE_ERRORS as exc:
        raise CollateralError(f"not a usable DER X.509 certificate: {exc}") from exc


def load_pem_certificates(data: bytes) -> list[x509.Certificate]:
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=CryptographyDeprecationWarning,
                                    message=".*serial number.*")
            return [_checked(c) for c in x509.load_pem_x509_certificates(bytes(data))]
    except _PARSE_ERRORS as exc:
        raise CollateralError(f"not usable PEM X.509 certificates: {exc}") from exc


def serial_number_of(cert_der: bytes) -> int:
    """The serial number read from the DER with attestcall's own decoder (no warnings)."""
    try:
        tbs = der.decode(cert_der).children()[0]
        fields = tbs.children()
        first = fields[0]
        serial = fields[1] if first.tag == 0xA0 else first
        return serial.as_integer()
    except (der.DerError, IndexError) as exc:
        raise CollateralError(f"not a DER X.509 certificate: {exc}") from exc


@dataclass(frozen=True)
class VekExtensions:
    """AMD's extensions of a VCEK or VLEK."""

    struct_version: int
    product_name: str
    bootloader: int
    tee: int
    snp: int
    microcode: int
    fmc: int | None
    hwid: bytes | None
    csp_id: str | None

    @property
    def product(self) -> str:
        """The product line: the product name up to its stepping ("Milan-B0" → "Milan")."""
        return self.product_name.split("-", 1)[0]


def _extension_values(cert: x509.Certificate) -> dict[str, bytes]:
    values: dict[str, bytes] = {}
    for extension in cert.extensions:
        oid = extension.oid.dotted_string
        if oid.startswith(OID_PREFIX + ".") and isinstance(extension.value,
                                                           x509.UnrecognizedExtension):
            values[oid] = extension.value.value
    return values


def _decode_int(value: bytes, oid: str, limit: int) -> int:
    try:
        number = der.decode(value).as_integer()
    except der.DerError as exc:
        raise CollateralError(f"AMD extension {oid} is not a DER INTEGER: {exc}") from exc
    if not 0 <= number <= limit:
        raise CollateralError(f"AMD extension {oid} is {number}, outside 0..{limit}")
    return number


def _decode_ia5(value: bytes, oid: str) -> str:
    try:
        tlv = der.decode(value)
    except der.DerError as exc:
        raise CollateralError(f"AMD extension {oid} is not DER: {exc}") from exc
    if tlv.tag != der.IA5_STRING:
        raise CollateralError(f"AMD extension {oid} is not an IA5String")
    try:
        return tlv.as_ia5_string()
    except der.DerError as exc:
        raise CollateralError(f"AMD extension {oid} is not ASCII") from exc


def _decode_hwid(value: bytes) -> bytes:
    if len(value) in (8, 64):
        return value
    # Accept an OCTET STRING wrapping of the same lengths.
    try:
        inner = der.decode(value).as_octet_string()
    except der.DerError as exc:
        raise CollateralError(f"AMD hardware id extension has {len(value)} bytes, "
                              "not 8 or 64") from exc
    if len(inner) not in (8, 64):
        raise CollateralError(f"AMD hardware id is {len(inner)} bytes, not 8 or 64")
    return inner


def decode_vek_extensions(values: dict[str, bytes]) -> VekExtensions:
    """Decode AMD's extensions from ``{dotted OID: extension value}``."""
    required = (OID_STRUCT_VERSION, OID_PRODUCT_NAME, OID_BOOTLOADER, OID_TEE, OID_SNP,
                OID_MICROCODE)
    for oid in required:
        if oid not in values:
            raise CollateralError(f"the certificate lacks AMD extension {oid}")
    product_name = _decode_ia5(values[OID_PRODUCT_NAME], OID_PRODUCT_NAME)
    fmc = _decode_int(values[OID_FMC], OID_FMC, 255) if OID_FMC in values else None
    hwid = _decode_hwid(values[OID_HWID]) if OID_HWID in values else None
    csp_id = _decode_ia5(values[OID_CSP_ID], OID_CSP_ID) if OID_CSP_ID in values else None
    if hwid is None and csp_id is None:
        raise CollateralError("the certificate has neither a hardware id (VCEK) nor a CSP id "
                              "(VLEK)")
    return VekExtensions(
        struct_version=_decode_int(values[OID_STRUCT_VERSION], OID_STRUCT_VERSION, 2**31),
        product_name=product_name,
        bootloader=_decode_int(values[OID_BOOTLOADER], OID_BOOTLOADER, 255),
        tee=_decode_int(values[OID_TEE], OID_TEE, 255),
        snp=_decode_int(values[OID_SNP], OID_SNP, 255),
        microcode=_decode_int(values[OID_MICROCODE], OID_MICROCODE, 255),
        fmc=fmc,
        hwid=hwid,
        csp_id=csp_id,
    )


def vek_extensions(cert: x509.Certificate) -> VekExtensions:
    """AMD's extensions of a VCEK or VLEK certificate (:class:`CollateralError` if absent
    or malformed)."""
    try:
        values = _extension_values(cert)
    except ValueError as exc:  # cryptography refuses a malformed extension list
        raise CollateralError(f"the certificate's extensions do not parse: {exc}") from exc
    return decode_vek_extensions(values)


def is_vek(cert: x509.Certificate) -> bool:
    """An end-entity ECDSA P-384 certificate with AMD's extensions."""
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        return False
    try:
        vek_extensions(cert)
    except CollateralError:
        return False
    return True


# ---------------------------------------------------------------------------- --certs input


@dataclass
class CertSet:
    """Certificates by role, in the order they were given."""

    vceks: list[x509.Certificate] = field(default_factory=list)
    vleks: list[x509.Certificate] = field(default_factory=list)
    intermediates: list[x509.Certificate] = field(default_factory=list)  # ASK or ASVK
    roots: list[x509.Certificate] = field(default_factory=list)  # ARK
    crls: list[x509.CertificateRevocationList] = field(default_factory=list)  # ARKs' CRLs

    def extend(self, other: CertSet) -> None:
        self.vceks += other.vceks
        self.vleks += other.vleks
        self.intermediates += other.intermediates
        self.roots += other.roots
        self.crls += other.crls


def classify(certs: Sequence[x509.Certificate]) -> CertSet:
    """Sort loose certificates by what they are: VCEK/VLEK by their AMD extensions, ARK by
    being self-issued, anything else an intermediate (ASK/ASVK)."""
    out = CertSet()
    for cert in certs:
        if is_vek(cert):
            (out.vceks if vek_extensions(cert).hwid is not None else out.vleks).append(cert)
        elif cert.subject == cert.issuer and isinstance(cert.public_key(), rsa.RSAPublicKey):
            out.roots.append(cert)
        else:
            out.intermediates.append(cert)
    return out


def certs_from_table(entries: Sequence[TableEntry]) -> CertSet:
    """The certificates of a table by their GUIDs; other GUIDs are ignored."""
    out = CertSet()
    slots = {VCEK_GUID: out.vceks, VLEK_GUID: out.vleks, ASK_GUID: out.intermediates,
             ARK_GUID: out.roots}
    for entry in entries:
        slot = slots.get(entry.guid)
        if slot is None:
            continue
        try:
            slot.append(load_certificate(entry.data))
        except CollateralError as exc:
            raise CertTableError(f"SNP certificate table: the {entry.name} entry is not a "
                                 "DER certificate") from exc
    return out


_PEM_MARK = b"-----BEGIN CERTIFICATE-----"


def load_certs(data: bytes) -> CertSet:
    """Load ``--certs`` input: a DER certificate, PEM (one or more certificates, and any
    ARK CRLs as ``X509 CRL`` blocks, as ``attestcall collateral`` writes them), or a
    certificate table. Unusable input raises :class:`CollateralError`."""
    data = bytes(data)
    if not data:
        raise CollateralError("the certificates file is empty")
    if _PEM_MARK in data or CRL_PEM_MARK in data:
        found = classify(load_pem_certificates(data) if _PEM_MARK in data else [])
        found.crls = load_crls(data) if CRL_PEM_MARK in data else []
        return found
    if data[0] == der.SEQUENCE:
        try:
            der.decode(data)
        except der.DerError:
            pass
        else:
            return classify([load_certificate(data)])
    try:
        return certs_from_table(parse_table(data))
    except CertTableError as exc:
        raise CollateralError(f"not a DER certificate, PEM or certificate table: {exc}") from exc
