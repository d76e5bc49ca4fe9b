"""Revocation of an SEV-SNP chain: the ARK's CRL (:mod:`attestcall.amd.formats.crl`).

:func:`check` takes the chain the appraisal built (a trusted ARK, the ASK or ASVK it
issued, the VCEK or VLEK that signed the report) and the CRLs at hand:

- ``given`` CRLs (``--crl``, a ``--certs`` bundle, a KDS, the service's cache) must each be
  the chain's ARK's: a CRL of another product line's ARK, or of any other issuer, is
  unusable input (:class:`CollateralError`), never ignored;
- ``extra`` CRLs (the simulators' own) are used when they are the chain's ARK's, ignored
  otherwise;
- a CRL that is used must verify with the ARK's key and be current at ``at``
  (thisUpdate ≤ at < nextUpdate), else :class:`CollateralError`;
- ``required`` (the source promised revocation: a KDS, ``--crl``) with no usable CRL at
  all is :class:`CollateralError` too.

A certificate of the chain that a used CRL lists is a problem naming it: the ASK/ASVK by
a direct entry (the ARK issued it), the VCEK/VLEK by an indirect entry whose
``certificateIssuer`` is its ASK/ASVK. Signature checks are cached by the exact bytes of
the CRL and the ARK; validity is evaluated at ``at`` on every call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from attestcall import pki
from attestcall.amd.formats.crl import issuer_common_name
from attestcall.amd.formats.report import PRODUCTS
from attestcall.errors import CollateralError
from attestcall.lru import Lru

_SIGNATURES: Lru[tuple[bytes, bytes], pki.Failure | None] = Lru(64)


def clear_caches() -> None:
    _SIGNATURES.clear()


@dataclass(frozen=True)
class Link:
    """A certificate of the chain whose revocation is checked."""

    role: str  # ASK, ASVK, VCEK or VLEK
    label: str  # its subject's common name
    cert: x509.Certificate


def _product_named(name: str) -> str | None:
    first = (name.split() or [""])[0]
    product = first.removeprefix("ARK-") if first.startswith("ARK-") else None
    return product if product in PRODUCTS else None


def _signature(crl: x509.CertificateRevocationList, ark: x509.Certificate) -> pki.Failure | None:
    key = (crl.public_bytes(Encoding.DER), ark.public_bytes(Encoding.DER))
    return _SIGNATURES.get_or_create(key, lambda: pki.crl_signed_by(crl, ark))


def _applies(crl: x509.CertificateRevocationList, ark: x509.Certificate, ark_label: str,
             product: str | None) -> str | None:
    """Why ``crl`` is not the ARK's, or None if it is."""
    if crl.issuer == ark.subject:
        return None
    name = issuer_common_name(crl)
    other = _product_named(name)
    if other is not None and product is not None and other != product:
        return (f"the CRL is {name}'s, for {other}; the evidence's chain is {product}'s "
                f"({ark_label})")
    return f"the CRL is issued by {name!r}, not by the chain's ARK ({ark_label})"


def _usable(crl: x509.CertificateRevocationList, ark: x509.Certificate, ark_label: str,
            at: datetime) -> None:
    failure = _signature(crl, ark)
    if failure is not None:
        raise CollateralError(f"the CRL of {ark_label} does not verify with its key "
                              f"({failure.detail})")
    timing = pki.crl_window(crl).timing(at)
    if timing is pki.Timing.LATE:
        raise CollateralError(f"the CRL of {ark_label} has expired: its nextUpdate is "
                              f"{crl.next_update_utc.isoformat() if crl.next_update_utc else '?'}"
                              f", verifying at {at.isoformat()}; fetch a current one")
    if timing is pki.Timing.EARLY:
        raise CollateralError(f"the CRL of {ark_label} is not valid before its thisUpdate "
                              f"{crl.last_update_utc.isoformat()} (verifying at "
                              f"{at.isoformat()})")


def _entry_issuer(entry: x509.RevokedCertificate, current: x509.Name) -> x509.Name:
    """The issuer an entry speaks for: its certificateIssuer, else the one before it."""
    try:
        extension = entry.extensions.get_extension_for_class(x509.CertificateIssuer)
    except x509.ExtensionNotFound:
        return current
    except ValueError as exc:
        raise CollateralError(f"a CRL entry has malformed extensions ({exc})") from None
    names = [n.value for n in extension.value if isinstance(n, x509.DirectoryName)]
    return names[0] if names else current


def _listed(crl: x509.CertificateRevocationList, ark_label: str,
            links: Sequence[Link]) -> list[str]:
    problems = []
    issuer = crl.issuer
    for entry in crl:
        issuer = _entry_issuer(entry, issuer)
        for link in links:
            if link.cert.issuer == issuer and link.cert.serial_number == entry.serial_number:
                when = entry.revocation_date_utc.date().isoformat()
                try:
                    reason = entry.extensions.get_extension_for_class(x509.CRLReason)
                    why = f", reason {reason.value.reason.name}"
                except (x509.ExtensionNotFound, ValueError):
                    why = ""
                problems.append(f"the {link.role} ({link.label}) is revoked: the CRL of "
                                f"{ark_label} lists it (since {when}{why})")
    return problems


def check(*, ark: x509.Certificate, ark_label: str, product: str | None,
          links: Sequence[Link], at: datetime,
          given: Sequence[x509.CertificateRevocationList] = (),
          extra: Sequence[x509.CertificateRevocationList] = (),
          required: bool = False) -> list[str]:
    """The problems revocation finds in the chain (see the module documentation);
    :class:`CollateralError` for a CRL that cannot be used."""
    used = []
    for crl in given:
        why = _applies(crl, ark, ark_label, product)
        if why is not None:
            raise CollateralError(why)
        used.append(crl)
    used += [crl for crl in extra if _applies(crl, ark, ark_label, product) is None]
    if required and not used:
        raise CollateralError(f"no CRL of {ark_label} to check revocation with")
    problems: list[str] = []
    for crl in used:
        _usable(crl, ark, ark_label, at)
        problems += _listed(crl, ark_label, links)
    return problems
