"""Where the SEV-SNP verifier gets AMD certificates: an injected source.

The verifier asks a source for what it needs, when it needs it:

- :meth:`CertSource.vceks` the VCEK for a report's product line, chip id and reported TCB
  (a :class:`VcekRequest`);
- :meth:`CertSource.vleks` the VLEK, if the source has one;
- :meth:`CertSource.signing_cas` the ASK (signs VCEKs) or ASVK (signs VLEKs) and
  :meth:`CertSource.arks` the ARK of a product line.

and, optionally (revocation, :mod:`attestcall.amd.verify.revocation`):

- ``crls(family, product, ark)`` the CRLs of the chain's ARK (``family`` "vcek" or
  "vlek", KDS's two CRL paths; ``ark`` the trusted ARK the chain ends at: a source that
  cannot have its CRL, e.g. KDS for a simulated ARK, answers none);
- ``revocation_required``: true when the source promises a CRL (a KDS, ``--crl``), so
  that having none is an error rather than an unchecked chain.

Each answers with candidates (possibly none); the verifier picks the certificate whose key
verifies the report and whose issuer names match, and trusts nothing a source says: the
chain must end at a pinned ARK. A source raises :class:`CollateralError` when it cannot
answer (a file that is not certificates, a KDS that fails).

Sources here: :class:`MemorySource` (certificates in hand; tests), :class:`FileSource`
(``--certs``: DER, PEM or a certificate table), :class:`TableSource` (the certificate
table appended to the report, which the verifier always consults after the given source)
and, in :mod:`attestcall.amd.fetch.kds`, :class:`~attestcall.amd.fetch.kds.KdsSource` (an AMD
KDS-compatible service over HTTP, with the disk cache). :func:`certs_source` turns what a
user gave (nothing, bytes, a path, a URL) into a source.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from cryptography import x509

from attestcall.amd.formats import certs as amdcerts
from attestcall.amd.formats import report as snp
from attestcall.amd.formats.crl import load_crls
from attestcall.errors import CollateralError, UsageError
from attestcall.lru import Lru

_CACHE_LIMIT = 512
_CERTSETS: Lru[bytes, amdcerts.CertSet] = Lru(_CACHE_LIMIT)  # --certs content -> its set
_PARSED: Lru[bytes, x509.Certificate] = Lru(_CACHE_LIMIT)  # table entry DER -> certificate


def clear_caches() -> None:
    """Forget every parsed ``--certs`` input and table certificate."""
    _CERTSETS.clear()
    _PARSED.clear()


# ---------------------------------------------------------------------------- the request


def _turin_like_chip_id(chip_id: bytes) -> bool:
    return any(chip_id[:8]) and not any(chip_id[8:])


def guess_product(report: snp.Report) -> str | None:
    """The product line the report alone reveals: its CPUID fields (version 3 on), or a
    Turin-style CHIP_ID (8 bytes, the rest zero). Milan and Genoa cannot be told apart in
    a version 2 report."""
    product = report.cpuid_product()
    if product is None and not report.mask_chip_key and _turin_like_chip_id(report.chip_id):
        product = snp.TURIN
    return product


@dataclass(frozen=True)
class VcekRequest:
    """What identifies a report's VCEK: product line, chip id and reported TCB."""

    product: str | None  # what the report reveals; None: Milan or Genoa (a version 2 report)
    chip_id: bytes  # CHIP_ID, 64 bytes (only the first 8 count on Turin)
    reported_tcb: int  # REPORTED_TCB as read from the report (decode with :meth:`tcb`)
    chip_id_masked: bool  # MASK_CHIP_ID was set: CHIP_ID is zero and names no chip

    @classmethod
    def from_report(cls, report: snp.Report) -> VcekRequest:
        return cls(product=guess_product(report), chip_id=report.chip_id,
                   reported_tcb=report.reported_tcb, chip_id_masked=report.mask_chip_key)

    def tcb(self, product: str) -> snp.TcbVersion:
        """REPORTED_TCB decoded with ``product``'s layout."""
        return snp.decode_tcb(self.reported_tcb, product)

    def hwid(self, product: str) -> bytes:
        """The hardware id a VCEK of ``product`` carries: CHIP_ID, its first 8 bytes on
        Turin."""
        return self.chip_id[:8] if product == snp.TURIN else self.chip_id


# ---------------------------------------------------------------------------- the protocol


@runtime_checkable
class CertSource(Protocol):
    """Where the SNP verifier gets AMD certificates (see the module documentation)."""

    def vceks(self, request: VcekRequest) -> Sequence[x509.Certificate]:
        """Candidate VCEKs for the report ``request`` describes."""
        ...

    def vleks(self) -> Sequence[x509.Certificate]:
        """Candidate VLEKs."""
        ...

    def signing_cas(self, product: str | None) -> Sequence[x509.Certificate]:
        """Candidate ASKs and ASVKs of ``product`` (None: the source's own choice)."""
        ...

    def arks(self, product: str | None) -> Sequence[x509.Certificate]:
        """Candidate ARKs of ``product`` (None: the source's own choice). Nothing a source
        gives is trusted: the verifier compares ARKs with its pinned ones."""
        ...


@dataclass(frozen=True)
class MemorySource:
    """Certificates in hand, by role; every query gets all of that role (the verifier
    picks). :meth:`of` sorts loose certificates by what they are."""

    vcek_certs: tuple[x509.Certificate, ...] = ()
    vlek_certs: tuple[x509.Certificate, ...] = ()
    signing_ca_certs: tuple[x509.Certificate, ...] = ()  # ASKs and ASVKs
    ark_certs: tuple[x509.Certificate, ...] = ()
    crl_list: tuple[x509.CertificateRevocationList, ...] = ()

    @classmethod
    def of(cls, certificates: Iterable[x509.Certificate]) -> MemorySource:
        return cls.from_set(amdcerts.classify(list(certificates)))

    @classmethod
    def from_set(cls, found: amdcerts.CertSet) -> MemorySource:
        return cls(tuple(found.vceks), tuple(found.vleks), tuple(found.intermediates),
                   tuple(found.roots), tuple(found.crls))

    @property
    def revocation_required(self) -> bool:
        return bool(self.crl_list)

    def crls(self, family: str, product: str | None,
             ark: x509.Certificate) -> Sequence[x509.CertificateRevocationList]:
        return self.crl_list

    def vceks(self, request: VcekRequest) -> Sequence[x509.Certificate]:
        return self.vcek_certs

    def vleks(self) -> Sequence[x509.Certificate]:
        return self.vlek_certs

    def signing_cas(self, product: str | None) -> Sequence[x509.Certificate]:
        return self.signing_ca_certs

    def arks(self, product: str | None) -> Sequence[x509.Certificate]:
        return self.ark_certs


NO_CERTS = MemorySource()


def _load_certs(data: bytes) -> amdcerts.CertSet:
    return _CERTSETS.get_or_create(data, lambda: amdcerts.load_certs(data))


@dataclass(frozen=True)
class FileSource:
    """The content of a ``--certs`` file: a DER certificate, PEM (one or more) or a
    certificate table. Certificates are sorted by what they are (see
    :func:`attestcall.amd.formats.certs.classify`); the parse happens on construction (unusable
    content raises :class:`CollateralError`) and is cached by content."""

    data: bytes
    _set: amdcerts.CertSet = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "data", bytes(self.data))
        object.__setattr__(self, "_set", _load_certs(self.data))

    @classmethod
    def read(cls, path: str | Path) -> FileSource:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise CollateralError(f"cannot read certificates {path}: {exc.strerror}") from None
        return cls(data)

    def vceks(self, request: VcekRequest) -> Sequence[x509.Certificate]:
        return self._set.vceks

    def vleks(self) -> Sequence[x509.Certificate]:
        return self._set.vleks

    def signing_cas(self, product: str | None) -> Sequence[x509.Certificate]:
        return self._set.intermediates

    def arks(self, product: str | None) -> Sequence[x509.Certificate]:
        return self._set.roots

    @property
    def revocation_required(self) -> bool:
        return bool(self._set.crls)

    def crls(self, family: str, product: str | None,
             ark: x509.Certificate) -> Sequence[x509.CertificateRevocationList]:
        return self._set.crls


@dataclass(frozen=True)
class WithCrls:
    """Another source's certificates with the CRLs of ``--crl`` (which must then be used:
    :attr:`revocation_required`)."""

    inner: CertSource
    crl_list: tuple[x509.CertificateRevocationList, ...]
    revocation_required: bool = True

    @classmethod
    def read(cls, inner: CertSource, value: bytes | bytearray | str | Path) -> WithCrls:
        """``inner`` with the CRLs in ``value`` (DER or PEM content as bytes, or a path)."""
        if isinstance(value, str | Path):
            try:
                value = Path(value).read_bytes()
            except OSError as exc:
                raise CollateralError(f"cannot read the CRL {value}: {exc.strerror}") from None
        crls = load_crls(bytes(value))
        if not crls:
            raise CollateralError("the CRL file holds no CRL")
        return cls(inner, tuple(crls))

    def vceks(self, request: VcekRequest) -> Sequence[x509.Certificate]:
        return self.inner.vceks(request)

    def vleks(self) -> Sequence[x509.Certificate]:
        return self.inner.vleks()

    def signing_cas(self, product: str | None) -> Sequence[x509.Certificate]:
        return self.inner.signing_cas(product)

    def arks(self, product: str | None) -> Sequence[x509.Certificate]:
        return self.inner.arks(product)

    def crls(self, family: str, product: str | None,
             ark: x509.Certificate) -> Sequence[x509.CertificateRevocationList]:
        return self.crl_list


def _parsed(der: bytes) -> x509.Certificate:
    return _PARSED.get_or_create(der, lambda: amdcerts.load_certificate(der))


class TableSource:
    """The certificate table the host appended to the report (GUIDs say the roles;
    unknown GUIDs are ignored). Every known entry is parsed on construction: one that is
    not a certificate raises :class:`~attestcall.amd.formats.certs.CertTableError`."""

    def __init__(self, entries: Sequence[amdcerts.TableEntry]) -> None:
        self.by_guid: dict[uuid.UUID, list[x509.Certificate]] = {}
        for entry in entries:
            if entry.guid not in amdcerts.GUID_NAMES:
                continue
            try:
                cert = _parsed(entry.data)
            except CollateralError as exc:
                raise amdcerts.CertTableError(
                    f"SNP certificate table: the {entry.name} entry is not a usable "
                    f"certificate ({exc})") from exc
            self.by_guid.setdefault(entry.guid, []).append(cert)

    @classmethod
    def from_evidence(cls, evidence: bytes) -> TableSource:
        """The table after the report in ``evidence`` (none: an empty source)."""
        return cls(amdcerts.parse_table(bytes(evidence[snp.REPORT_SIZE:])))

    def vceks(self, request: VcekRequest) -> Sequence[x509.Certificate]:
        return self.by_guid.get(amdcerts.VCEK_GUID, [])

    def vleks(self) -> Sequence[x509.Certificate]:
        return self.by_guid.get(amdcerts.VLEK_GUID, [])

    def signing_cas(self, product: str | None) -> Sequence[x509.Certificate]:
        return self.by_guid.get(amdcerts.ASK_GUID, [])

    def arks(self, product: str | None) -> Sequence[x509.Certificate]:
        return self.by_guid.get(amdcerts.ARK_GUID, [])


# ---------------------------------------------------------------------------- from the user


def certs_source(value: CertSource | bytes | bytearray | str | Path | None,
                 url: str | None = None,
                 crl: bytes | bytearray | str | Path | None = None) -> CertSource:
    """The source for what the user gave: a source as is; bytes as a ``--certs`` file's
    content; a path (str or Path) read as one; a KDS base URL (``--kds``) as a
    :class:`~attestcall.amd.fetch.kds.KdsSource` with the disk cache; nothing at all as
    :data:`NO_CERTS` (the report's own certificate table alone). ``crl`` (``--crl``: DER
    or PEM content, or a path) adds the ARK's CRL, which revocation must then use.

    :class:`UsageError` for both a value and a URL; :class:`CollateralError` for a file
    that cannot be read or holds no usable certificates, or a URL that is not http(s)."""
    if crl is not None:
        return WithCrls.read(certs_source(value, url), crl)
    if value is not None and url is not None:
        raise UsageError("give --certs or --kds, not both")
    if url is not None:
        from attestcall.amd.fetch.kds import KdsSource

        return KdsSource(url)
    if value is None:
        return NO_CERTS
    if isinstance(value, bytes | bytearray | memoryview):
        return FileSource(bytes(value))
    if isinstance(value, str | Path):
        return FileSource.read(value)
    if isinstance(value, CertSource):
        return value
    raise TypeError(f"not certificates, a path or a certificate source: {type(value).__name__}")
