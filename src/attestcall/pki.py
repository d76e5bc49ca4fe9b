"""X.509 links, CRLs, validity windows and pinned roots, checked with ``cryptography``.

One checker for every vendor (Intel's ECDSA P-256 chains and CRLs, AMD's RSASSA-PSS
SHA-384 ARK/ASK/VCEK chains and CRLs). It answers structural questions and leaves the
wording of a problem to the caller:

- :func:`issued_by`: did ``issuer`` issue ``child``? (names and signature, by
  ``Certificate.verify_directly_issued_by``, which verifies ECDSA, RSA PKCS#1 v1.5 and
  RSASSA-PSS with the hash, MGF1 hash and salt length the certificate states);
- :func:`crl_issued_by`: did ``issuer`` issue the CRL? (issuer name, then
  ``CertificateRevocationList.is_signature_valid``);
- :func:`revoked`: is a serial number listed in a CRL?
- :class:`Window`, :func:`cert_window`, :func:`crl_window`: is an instant inside a
  certificate's validity or a CRL's thisUpdate/nextUpdate?
- :func:`check_chain`: every link of a chain, and whether it ends at a pinned root.

Nothing is keyed on serial numbers (AMD issues every certificate with serial 0), and
nothing is cached here: callers cache results by the exact bytes they checked.
"""

from __future__ import annotations

import enum
import warnings
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.utils import CryptographyDeprecationWarning

__all__ = [
    "Chain", "Fault", "Failure", "Timing", "Window", "cert_window", "check_chain",
    "crl_issued_by", "crl_signed_by", "crl_window", "issued_by", "load_der_certificate", "revoked",
]  # fmt: skip

_FOREVER = datetime.max.replace(tzinfo=UTC)


class Fault(enum.Enum):
    """Why a link or a CRL does not hold."""

    # The issuer cannot have issued it: the issuer name is not the issuer's subject, the
    # certificate's two signature algorithm fields differ, or the algorithm does not fit
    # the issuer's key type (cryptography's ValueError).
    WRONG_ISSUER = "wrong issuer"
    BAD_SIGNATURE = "bad signature"  # the signature does not verify with the issuer's key
    UNSUPPORTED = "unsupported"  # an algorithm or key cryptography cannot verify with


@dataclass(frozen=True)
class Failure:
    """A failed link or CRL: the fault and cryptography's one-line reason."""

    fault: Fault
    detail: str


def load_der_certificate(data: bytes) -> x509.Certificate:
    """``x509.load_der_x509_certificate`` without the deprecation warning cryptography
    gives for a serial number that is not positive (AMD's certificates all have serial 0;
    whether such a serial is acceptable is the caller's rule, not the parser's)."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", category=CryptographyDeprecationWarning, message=".*serial number.*"
        )
        return x509.load_der_x509_certificate(bytes(data))


def issued_by(child: x509.Certificate, issuer: x509.Certificate) -> Failure | None:
    """Why ``issuer`` did not issue ``child``, or None if it did: the child's issuer name is
    the issuer's subject, its two signature algorithm fields agree, and its signature over
    its tbsCertificate verifies with the issuer's public key (ECDSA, RSA PKCS#1 v1.5 or
    RSASSA-PSS)."""
    try:
        child.verify_directly_issued_by(issuer)
    except InvalidSignature:
        return Failure(Fault.BAD_SIGNATURE, "the signature does not verify")
    except ValueError as exc:
        return Failure(Fault.WRONG_ISSUER, str(exc))
    except (TypeError, UnsupportedAlgorithm) as exc:
        return Failure(Fault.UNSUPPORTED, str(exc))
    return None


def crl_issued_by(crl: x509.CertificateRevocationList, issuer: x509.Certificate) -> Failure | None:
    """Why ``issuer`` did not issue ``crl``, or None if it did: the CRL's issuer name is the
    issuer's subject and its signature verifies with the issuer's key."""
    if crl.issuer != issuer.subject:
        return Failure(Fault.WRONG_ISSUER, "the CRL's issuer is not the certificate's subject")
    return crl_signed_by(crl, issuer)


def crl_signed_by(crl: x509.CertificateRevocationList, issuer: x509.Certificate) -> Failure | None:
    """Why the CRL's signature does not verify with ``issuer``'s key, or None: the
    signature half of :func:`crl_issued_by`, for a caller that has already compared the
    names (as exact bytes it keeps)."""
    try:
        valid = crl.is_signature_valid(issuer.public_key())  # type: ignore[arg-type]
    except (TypeError, ValueError, UnsupportedAlgorithm) as exc:
        return Failure(Fault.UNSUPPORTED, str(exc))
    if not valid:
        return Failure(Fault.BAD_SIGNATURE, "the CRL signature does not verify")
    return None


def revoked(crl: x509.CertificateRevocationList, serial: int) -> bool:
    """``serial`` is listed in ``crl``. A negative serial (which no CA issues and
    cryptography will not look up) counts as listed; 0 is looked up like any other."""
    try:
        return crl.get_revoked_certificate_by_serial_number(serial) is not None
    except ValueError:
        return True


class Timing(enum.Enum):
    """Where an instant falls against a validity window."""

    VALID = "valid"
    EARLY = "not yet valid"
    LATE = "expired"


@dataclass(frozen=True)
class Window:
    """Valid from ``start`` (inclusive) to ``end``: inclusive for a certificate's notAfter
    (RFC 5280), exclusive for a CRL's nextUpdate or a document's next update."""

    start: datetime
    end: datetime
    end_inclusive: bool = True

    def timing(self, at: datetime) -> Timing:
        if at < self.start:
            return Timing.EARLY
        if at < self.end or (self.end_inclusive and at == self.end):
            return Timing.VALID
        return Timing.LATE


def cert_window(cert: x509.Certificate) -> Window:
    """A certificate's notBefore..notAfter (both inclusive)."""
    return Window(cert.not_valid_before_utc, cert.not_valid_after_utc, True)


def crl_window(crl: x509.CertificateRevocationList) -> Window:
    """A CRL's thisUpdate..nextUpdate (exclusive; no nextUpdate means no end)."""
    end = crl.next_update_utc
    return Window(crl.last_update_utc, _FOREVER if end is None else end, False)


@dataclass(frozen=True)
class Chain:
    """What :func:`check_chain` found. ``links[i]`` is the failure of ``certs[i]`` issued
    by ``certs[i + 1]`` (None if it holds); ``pinned`` says the last certificate is one of
    the pinned roots (its own self-signature is not checked: it is pinned)."""

    certs: tuple[x509.Certificate, ...]
    links: tuple[Failure | None, ...]
    pinned: bool

    @property
    def linked(self) -> bool:
        return all(link is None for link in self.links)

    def invalid_at(self, at: datetime) -> list[tuple[int, Timing]]:
        """(index, timing) of every certificate not valid at ``at``."""
        found = []
        for index, cert in enumerate(self.certs):
            timing = cert_window(cert).timing(at)
            if timing is not Timing.VALID:
                found.append((index, timing))
        return found


def check_chain(certs: Sequence[x509.Certificate], roots: Collection[x509.Certificate]) -> Chain:
    """Check each certificate is issued by the next, and whether the last is pinned
    (``roots`` compares by encoding, as ``x509.Certificate`` equality does)."""
    if not certs:
        raise ValueError("a chain holds at least one certificate")
    links = tuple(issued_by(child, parent) for child, parent in zip(certs, certs[1:], strict=False))
    return Chain(tuple(certs), links, certs[-1] in roots)
