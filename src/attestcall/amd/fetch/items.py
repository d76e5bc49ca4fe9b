"""AMD KDS answers one at a time: what each item is, where a KDS serves it, and the check
an answer must pass before a cache keeps it.

Items (kind, key)::

    vcek        {product}/{hwid}?blSPL=..&teeSPL=..&snpSPL=..&ucodeSPL=..[&fmcSPL=..]
                                        GET /vcek/v1/{key}            DER certificate
    cert_chain  vcek/{product} | vlek/{product}
                                        GET /{vcek|vlek}/v1/{product}/cert_chain
                                        PEM: the ASK (ASVK for VLEKs), then the ARK
    crl         vcek/{product} | vlek/{product}
                                        GET /{vcek|vlek}/v1/{product}/crl   DER CRL (the ARK's)

KDS serves no VLEK by chip (a cloud provider gets its VLEKs from AMD and they travel in the
guest's certificate table), so there is no VLEK item.

:func:`check` returns what to keep (the body as DER, or PEM for a chain, and the item's
next update: a certificate's notAfter, a CRL's nextUpdate) or raises
:class:`CollateralError` with one line. The check is the item's own: the ARK is a pinned
one (or an extra trusted root, e.g. a simulated one), the ASK is issued by it, a VCEK is
issued by an ASK of its product line that is (pinned, or given as ``signers``) and carries
the hardware id and SPLs asked for, a CRL is issued and signed by the ARK. Dates are not
checked: freshness is the verifier's decision.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from attestcall import pki
from attestcall.amd.fetch.kds import service_root
from attestcall.amd.formats import report as snp
from attestcall.amd.formats.certs import (
    load_certificate,
    load_pem_certificates,
    vek_extensions,
)
from attestcall.amd.roots import amd_arks, amd_asks
from attestcall.errors import CollateralError
from attestcall.fetch import Checked

KINDS = ("vcek", "cert_chain", "crl")
FAMILIES = ("vcek", "vlek")
SPLS = ("blSPL", "teeSPL", "snpSPL", "ucodeSPL", "fmcSPL")  # KDS's order
_HWID = re.compile(r"[0-9A-Fa-f]+")
_SPL = re.compile(r"\d{1,3}")


class UnknownIssuer(CollateralError):
    """A VCEK none of the known ASKs issued (a simulated chip's, whose ASK is not pinned):
    its product's cert_chain may be the missing piece."""


# ------------------------------------------------------------------------------ keys


def product_of(name: str) -> str:
    if name not in snp.PRODUCTS:
        raise CollateralError(f"unknown product line {name!r}; known: {', '.join(snp.PRODUCTS)}")
    return name


def family_key(family: str, product: str) -> str:
    """The key of a cert_chain or crl item."""
    if family not in FAMILIES:
        raise CollateralError(f"unknown key family {family!r} (vcek or vlek)")
    return f"{family}/{product_of(product)}"


def vcek_key(product: str, hwid: str, spls: Mapping[str, str]) -> str:
    """The canonical key of a VCEK request (:class:`CollateralError` for a bad one)."""
    product = product_of(product)
    size = 8 if product == snp.TURIN else 64
    if not _HWID.fullmatch(hwid) or len(hwid) != 2 * size:
        raise CollateralError(f"a {product} hardware id is {2 * size} hex digits")
    unknown = sorted(set(spls) - set(SPLS))
    if unknown:
        raise CollateralError(f"unknown VCEK parameter {unknown[0]!r}; known: {', '.join(SPLS)}")
    needed = SPLS if product == snp.TURIN else SPLS[:4]
    missing = [name for name in needed if name not in spls]
    if missing:
        raise CollateralError(f"the VCEK request lacks {missing[0]}")
    if product != snp.TURIN and "fmcSPL" in spls:
        raise CollateralError(f"{product} has no fmcSPL")
    values = []
    for name in needed:
        text = spls[name]
        if not _SPL.fullmatch(text) or int(text) > 255:
            raise CollateralError(f"{name} is a number from 0 to 255, not {text!r}")
        values.append(f"{name}={int(text):02d}")
    return f"{product}/{hwid.lower()}?" + "&".join(values)


def _vcek_parts(key: str) -> tuple[str, bytes, dict[str, int]]:
    path, _, query = key.partition("?")
    product, _, hwid = path.partition("/")
    spls = dict(part.split("=", 1) for part in query.split("&"))
    return product, bytes.fromhex(hwid), {name: int(value) for name, value in spls.items()}


def vcek_item_key(cert: x509.Certificate) -> str:
    """The key under which KDS would serve this VCEK (from its own extensions)."""
    ext = vek_extensions(cert)
    if ext.hwid is None:
        raise CollateralError("the certificate is a VLEK (no hardware id): KDS serves no VLEKs "
                              "by chip")
    spls = {"blSPL": ext.bootloader, "teeSPL": ext.tee, "snpSPL": ext.snp,
            "ucodeSPL": ext.microcode}
    if ext.fmc is not None:
        spls["fmcSPL"] = ext.fmc
    hwid = ext.hwid[:8] if ext.product == snp.TURIN else ext.hwid
    return vcek_key(ext.product, hwid.hex(), {k: str(v) for k, v in spls.items()})


def url(base: str, kind: str, key: str) -> str:
    """Where the KDS at ``base`` serves the item."""
    root = service_root(base)
    if kind == "vcek":
        return f"{root}/vcek/v1/{key}"
    if kind in ("cert_chain", "crl"):
        family, _, product = key.partition("/")
        return f"{root}/{family}/v1/{product}/{kind}"
    raise CollateralError(f"unknown AMD collateral kind {kind!r}")


# ------------------------------------------------------------------------------ checks


def _common_name(name: x509.Name) -> str:
    values = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(values[0].value) if values else ""


def _ark_of(product: str, roots: Sequence[x509.Certificate]) -> list[x509.Certificate]:
    """The trusted ARKs of ``product``: pinned, then the extra roots."""
    return [ark for ark in [*amd_arks(), *roots]
            if (_common_name(ark.subject).split() or [""])[0] == f"ARK-{product}"]


def _check_chain(key: str, body: bytes, roots: Sequence[x509.Certificate]) -> Checked:
    family, _, product = key.partition("/")
    chain = load_pem_certificates(body)
    if len(chain) != 2:
        raise CollateralError(f"expected the {'ASK' if family == 'vcek' else 'ASVK'} and the "
                              f"ARK, got {len(chain)} certificates")
    ask, ark = chain
    if ark not in _ark_of(product, roots):
        raise CollateralError(f"the ARK is not a trusted {product} ARK")
    failure = pki.issued_by(ask, ark)
    if failure is not None:
        raise CollateralError(f"the ARK did not issue the ASK: {failure.detail}")
    is_vlek = "VLEK" in _common_name(ask.subject)
    if is_vlek != (family == "vlek"):
        raise CollateralError(f"the chain's signing key {_common_name(ask.subject)!r} is not "
                              f"a {'ASVK' if family == 'vlek' else 'ASK'}")
    body = b"".join(cert.public_bytes(Encoding.PEM) for cert in chain)
    return Checked(body, {}, min(c.not_valid_after_utc for c in chain))


def _check_crl(key: str, body: bytes, roots: Sequence[x509.Certificate]) -> Checked:
    _, _, product = key.partition("/")
    data = body.strip()
    try:  # DER as it came (stripped, a signature ending in a whitespace byte would lose it)
        crl = (x509.load_pem_x509_crl(data) if data.startswith(b"-----BEGIN")
               else x509.load_der_x509_crl(body))
    except ValueError:
        raise CollateralError("the answer is not a CRL (DER or PEM)") from None
    if not any(pki.crl_issued_by(crl, ark) is None for ark in _ark_of(product, roots)):
        raise CollateralError(f"the CRL is not issued and signed by a trusted {product} ARK")
    if crl.next_update_utc is None:
        raise CollateralError("the CRL has no nextUpdate")
    return Checked(crl.public_bytes(Encoding.DER), {}, crl.next_update_utc)


def _check_vcek(key: str, body: bytes, roots: Sequence[x509.Certificate],
                signers: Sequence[x509.Certificate]) -> Checked:
    product, hwid, spls = _vcek_parts(key)
    data = body.strip()
    if data.startswith(b"-----BEGIN"):
        certs = load_pem_certificates(data)
        if len(certs) != 1:
            raise CollateralError(f"{len(certs)} certificates, not one VCEK")
        cert = certs[0]
    else:
        cert = load_certificate(bytes(body))
    ext = vek_extensions(cert)
    if ext.hwid is None or ext.hwid[:len(hwid)] != hwid or any(ext.hwid[len(hwid):]):
        raise CollateralError("the VCEK is another chip's (its hardware id differs)")
    found = {"blSPL": ext.bootloader, "teeSPL": ext.tee, "snpSPL": ext.snp,
             "ucodeSPL": ext.microcode, "fmcSPL": ext.fmc}
    for name, value in spls.items():
        if found[name] != value:
            raise CollateralError(f"the VCEK's {name} is {found[name]}, not {value}")
    if ext.product != product:
        raise CollateralError(f"the VCEK is a {ext.product} key, not a {product} one")
    arks = _ark_of(product, roots)
    for ask in [*amd_asks(), *signers]:
        if pki.issued_by(cert, ask) is None and any(pki.issued_by(ask, ark) is None
                                                     for ark in arks):
            return Checked(cert.public_bytes(Encoding.DER), {}, cert.not_valid_after_utc)
    raise UnknownIssuer(f"the VCEK is not issued by a {product} ASK that a trusted ARK issued")


def check(kind: str, key: str, body: bytes, headers: Mapping[str, str] | None = None,
          roots: Sequence[x509.Certificate] = (),
          signers: Sequence[x509.Certificate] = ()) -> Checked:
    """The answer for item (``kind``, ``key``), checked (module documentation). ``roots``
    are ARKs trusted beside the pinned ones; ``signers`` ASKs to try beside the pinned
    ones (a VCEK's issuer must still chain to a trusted ARK)."""
    if kind == "vcek":
        return _check_vcek(key, body, roots, signers)
    if kind == "cert_chain":
        return _check_chain(key, body, roots)
    if kind == "crl":
        return _check_crl(key, body, roots)
    raise CollateralError(f"unknown AMD collateral kind {kind!r}")


def chain_answer(certs: Sequence[x509.Certificate],
                 roots: Sequence[x509.Certificate] = ()) -> list[tuple[str, str, bytes]]:
    """The cert_chain answers (kind, key, PEM body) a KDS would give for loose AMD
    certificates: each ASK or ASVK among ``certs`` with its ARK (from ``certs`` or the
    trusted roots)."""
    answers = []
    arks = [c for c in [*certs, *amd_arks(), *roots]
            if c.subject == c.issuer and _common_name(c.subject).startswith("ARK-")]
    for cert in certs:
        name = _common_name(cert.subject)
        if cert.subject == cert.issuer or not name.startswith("SEV-"):
            continue
        ark = next((a for a in arks if a.subject == cert.issuer), None)
        if ark is None:
            continue
        product = _common_name(ark.subject).split()[0].removeprefix("ARK-")
        family = "vlek" if "VLEK" in name else "vcek"
        body = b"".join(c.public_bytes(Encoding.PEM) for c in (cert, ark))
        answers.append(("cert_chain", family_key(family, product), body))
    return answers


def crl_product(crl: x509.CertificateRevocationList) -> str | None:
    """The product line whose ARK issued ``crl`` (by name), or None."""
    name = _common_name(crl.issuer).split()
    if not name or not name[0].startswith("ARK-"):
        return None
    product = name[0].removeprefix("ARK-")
    return product if product in snp.PRODUCTS else None
