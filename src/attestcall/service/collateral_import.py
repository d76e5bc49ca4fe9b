"""``attestcall service collateral import``: collateral files into the fleet's cache, for
fleets that cannot reach Intel or AMD (as PCCS's offline mode takes them).

Each file is recognised by its content:

- a ``QuoteCollateralV3`` JSON document (what ``attestcall verify --collateral`` takes and
  dcap-qvl writes): its PCK CRL, root CA CRL, TCB info and QE identity, each stored as the
  answer a PCCS would give for it;
- certificates, DER or PEM (one or several): an AMD VCEK (under the KDS path its own
  extensions name), an AMD ASK or ASVK with its ARK (the product's ``cert_chain``); other
  certificates (an Intel PCK CA, a root) only serve as issuers of the CRLs given with them;
- CRLs, DER, PEM or hex: Intel's root CA CRL, a PCK CRL (its issuer chain from the
  certificates given with it, or the pinned root), an AMD ARK's CRL.

Every item is checked as a fetched one is (its signature under its issuer chain to the
pinned Intel or AMD root, or this machine's simulated roots when trusted) before any is
stored: a file that is not collateral, or an item that fails its check, stores nothing.
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from attestcall import pki
from attestcall.amd.fetch import items as amd_items
from attestcall.amd.formats.certs import is_vek, load_pem_certificates, vek_extensions
from attestcall.errors import CollateralError
from attestcall.intel.fetch import items as intel_items
from attestcall.intel.formats.collateral import Collateral
from attestcall.service.collateral import CollateralCache
from attestcall.service.collateral_store import IMPORT, Item, Record

MAX_FILE = 16 * 1024 * 1024
_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----.*?-----END \1-----", re.S)
_HEX = re.compile(rb"[0-9A-Fa-f]+")


@dataclass
class _File:
    name: str
    certs: list[x509.Certificate] = field(default_factory=list)
    crls: list[x509.CertificateRevocationList] = field(default_factory=list)
    collateral: Collateral | None = None


@dataclass(frozen=True)
class Planned:
    """One item to store: where it came from, and the answer as a PCCS/KDS gives it."""

    file: str
    item: Item
    body: bytes
    headers: dict[str, str]


def _read(path: Path) -> _File:
    name = str(path)
    try:
        data = path.read_bytes() if path.stat().st_size <= MAX_FILE else None
    except OSError as exc:
        raise CollateralError(f"cannot read {name}: {exc.strerror}") from None
    if data is None:
        raise CollateralError(f"{name}: larger than {MAX_FILE} bytes: not collateral")
    found = _File(name)
    stripped = data.strip()
    if stripped.startswith(b"{"):
        try:
            found.collateral = Collateral.load(stripped)
        except CollateralError as exc:
            raise CollateralError(f"{name}: not QuoteCollateralV3 collateral: {exc}") from None
        return found
    try:
        if b"-----BEGIN" in stripped:
            for block in _PEM_BLOCK.finditer(stripped):
                if block.group(1) == b"CERTIFICATE":
                    found.certs += load_pem_certificates(block.group(0))
                elif block.group(1) == b"X509 CRL":
                    found.crls.append(x509.load_pem_x509_crl(block.group(0)))
        elif _HEX.fullmatch(stripped or b"-"):
            found.crls.append(x509.load_der_x509_crl(binascii.unhexlify(stripped)))
        else:  # DER as it is (stripped, a signature ending in a whitespace byte is cut)
            try:
                found.certs.append(pki.load_der_certificate(data))
            except ValueError:
                found.crls.append(x509.load_der_x509_crl(data))
    except (ValueError, binascii.Error, CollateralError):
        raise CollateralError(f"{name}: not collateral (a QuoteCollateralV3 document, "
                              "certificates or CRLs)") from None
    if not found.certs and not found.crls:
        raise CollateralError(f"{name}: holds no certificate or CRL")
    return found


def _name(cert: x509.Certificate) -> str:
    values = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(values[0].value) if values else cert.subject.rfc4514_string()


def plan(paths: list[Path], cache: CollateralCache) -> list[Planned]:
    """What the files hold, as items to store (nothing checked yet)."""
    files = [_read(path) for path in paths]
    pool = [cert for f in files for cert in f.certs]
    intel_roots, amd_roots = cache.roots("intel"), cache.roots("amd")
    planned: list[Planned] = []
    for f in files:
        answers: list[tuple[str, Any]] = []
        if f.collateral is not None:
            answers += [("intel", a) for a in intel_items.answers_of(f.collateral)]
        for crl in f.crls:
            intel = intel_items.crl_answer(crl, pool, intel_roots)
            product = amd_items.crl_product(crl)
            if intel is not None:
                answers.append(("intel", intel))
            elif product is not None:
                der = crl.public_bytes(Encoding.DER)
                answers += [("amd", ("crl", amd_items.family_key(family, product), der, {}))
                            for family in amd_items.FAMILIES]
            else:
                raise CollateralError(f"{f.name}: a CRL that is neither Intel's nor an AMD "
                                      f"ARK's (issuer {crl.issuer.rfc4514_string()})")
        for cert in f.certs:
            if is_vek(cert):
                if vek_extensions(cert).hwid is None:
                    raise CollateralError(f"{f.name}: a VLEK: KDS serves no VLEK by chip (it "
                                          "travels in the guest's certificate table)")
                answers.append(("amd", ("vcek", amd_items.vcek_item_key(cert),
                                        cert.public_bytes(Encoding.DER), {})))
            elif "SGX PCK Certificate" in _name(cert):
                raise CollateralError(f"{f.name}: a PCK certificate: it is served by its "
                                      "platform's pckcert query and cannot be imported alone")
        answers += [("amd", (kind, key, body, {}))
                    for kind, key, body in amd_items.chain_answer(f.certs, amd_roots)]
        planned += [Planned(f.name, Item(vendor, kind, key), body, headers)
                    for vendor, (kind, key, body, headers) in answers]
    if not planned:
        raise CollateralError("the files hold no collateral item (only certificates that issue "
                              "none)")
    unique: dict[Item, Planned] = {}
    for item in planned:  # the same item in several files (a root CA CRL): the last one
        unique.pop(item.item, None)
        unique[item.item] = item
    return list(unique.values())


def import_files(paths: list[Path], cache: CollateralCache) -> list[tuple[Planned, Record]]:
    """Check every item the files hold, then store them all; a failure stores nothing."""
    planned = plan(paths, cache)
    signers = [cert for item in planned for cert in _certs_of(item)]
    checked = []
    for item in planned:
        try:
            checked.append((item, cache.check(item.item, item.body, item.headers, signers)))
        except CollateralError as exc:
            raise CollateralError(f"{item.file}: {item.item} is refused: {exc}") from None
    now = cache.clock()
    stored = []
    for item, answer in checked:
        record = Record(item.item, answer.body, answer.headers, now, answer.next_update,
                        cache.refresh_at(now, answer.next_update), IMPORT)
        cache.store.put(record)
        stored.append((item, record))
    return stored


def _certs_of(item: Planned) -> list[x509.Certificate]:
    """The ASK of a planned cert_chain (a VCEK given with its chain is checked with it)."""
    if item.item.kind != "cert_chain":
        return []
    return load_pem_certificates(item.body)[:1]

