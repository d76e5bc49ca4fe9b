"""The attestation service's certificate authority: its key, its certificate, what it signs.

Layout of the service home (``--home``)::

    home/               mode 0700, created if missing
      ca.key.pem        the CA private key, PKCS#8 PEM, mode 0600
      ca.pem            the self-signed CA certificate, PEM

Both files are created on first start, each atomically: written under a temporary name
and hard-linked into place, so replicas starting together over one shared home all end up
with the one key and the one certificate that won, never a half-written file. A key file
readable by group or others is refused, as ssh refuses one. ``key_type`` (P-384 by
default; P-256, Ed25519 and ML-DSA-65 accepted: an ML-DSA-65 CA signs its certificates and
CRLs with ML-DSA-65) applies only when the key is created: an existing CA is used as it is
(:func:`existing_key_type` tells what it is).

:meth:`ServiceCa.issue` signs a keep's short-lived certificate carrying the attestation
result (:mod:`attestcall.service.result`); :meth:`ServiceCa.crl` signs the revocation
list. Both take the instant as an argument; only creating the CA reads the clock.
"""

from __future__ import annotations

import datetime as dt
import os
import stat
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
    PrivateKeyTypes,
)
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from attestcall.deploy.keys import (
    UnsupportedKeyType,
    generate_key,
    key_type_of,
    signature_hash,
)
from attestcall.errors import AttestcallError
from attestcall.service import result as results
from attestcall.simstate import write_private_key, write_public

KEY_FILE = "ca.key.pem"
CERT_FILE = "ca.pem"
CA_KEY_TYPES = ("p384", "p256", "ed25519", "mldsa65")
CA_NAME = "attestcall service CA"
CA_VALIDITY = dt.timedelta(days=3650)
CLOCK_SKEW = dt.timedelta(minutes=5)  # notBefore is backdated this much


class CaError(AttestcallError):
    """The service CA cannot be loaded, created or asked to sign this."""


class CaKeyExposed(CaError):
    """The CA key file is readable by group or others."""


Reason = x509.ReasonFlags | str | None


@dataclass(frozen=True)
class Revoked:
    """One revoked certificate, as the CRL lists it."""

    serial: int | str
    revoked_at: dt.datetime
    reason: Reason = None


def _aware(instant: dt.datetime, what: str) -> dt.datetime:
    if instant.tzinfo is None:
        raise CaError(f"{what} must be a timezone-aware datetime")
    return instant.astimezone(dt.UTC).replace(microsecond=0)


def _serial(serial: int | str) -> int:
    """A serial given as an int or as hex text (how the database keys it)."""
    if isinstance(serial, str):
        try:
            serial = int(serial, 16)
        except ValueError:
            raise CaError(f"serial {serial!r} is not hexadecimal") from None
    if serial <= 0:
        raise CaError(f"serial {serial} is not positive")
    return serial


def _reason_flag(reason: Reason) -> x509.ReasonFlags | None:
    """The CRL reason code for ``reason``: a ReasonFlags, or text naming one of RFC 5280's
    reasons ("keyCompromise", ...). Other text (a person's note) gives no code, and
    ``unspecified`` none either (RFC 5280 5.3.1)."""
    if isinstance(reason, str):
        reason = next((f for f in x509.ReasonFlags if f.value == reason), None)
    if reason is None or reason is x509.ReasonFlags.unspecified:
        return None
    return reason


class ServiceCa:
    """The CA key and certificate under ``home``; signs keep certificates and CRLs."""

    def __init__(self, key: CertificateIssuerPrivateKeyTypes, certificate: x509.Certificate,
                 home: Path | None = None):
        self.key = key
        self.certificate = certificate
        self.home = home  # the service home it was loaded from (the token key lives there)
        self.key_type = key_type_of(key.public_key())
        self._hash = signature_hash(self.key_type)
        self._ski = certificate.extensions.get_extension_for_class(
            x509.SubjectKeyIdentifier).value

    # ------------------------------------------------------------------ loading

    @classmethod
    def load_or_create(cls, home: Path | str, key_type: str = "p384") -> ServiceCa:
        """The CA in ``home``, its key and certificate created on first use."""
        if key_type not in CA_KEY_TYPES:
            raise CaError(f"unknown CA key type {key_type!r}; choose one of "
                          f"{', '.join(CA_KEY_TYPES)}")
        home = Path(home)
        try:
            home.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise CaError(f"cannot create the service home {home}: "
                          f"{exc.strerror or exc}") from None
        if not home.is_dir():
            raise CaError(f"{home} is not a directory")
        key_path = home / KEY_FILE
        if not key_path.exists():
            key = generate_key(key_type)
            publish(home, KEY_FILE, lambda path: write_private_key(path, key))
        key = _read_key(key_path)
        cert_path = home / CERT_FILE
        if not cert_path.exists():
            cert = _self_signed(key)
            pem = cert.public_bytes(serialization.Encoding.PEM)
            publish(home, CERT_FILE, lambda path: write_public(path, pem))
        return cls(key, _read_certificate(cert_path, key), home)

    # ------------------------------------------------------------------ signing

    def issue(
        self,
        csr_public_key: CertificatePublicKeyTypes,
        subject: x509.Name,
        *,
        lifetime: dt.timedelta,
        result: results.AttestationResult,
        crl_url: str,
        now: dt.datetime,
    ) -> x509.Certificate:
        """A keep's certificate for ``csr_public_key``: valid from ``now`` (backdated by
        CLOCK_SKEW) to ``now + lifetime``, EKU serverAuth and clientAuth, the CRL
        distribution point ``crl_url`` and the attestation result extension."""
        now = _aware(now, "now")
        if lifetime <= dt.timedelta(0):
            raise CaError("a certificate's lifetime must be positive")
        not_after = now + lifetime
        if not_after > self.certificate.not_valid_after_utc:
            raise CaError("the certificate would outlive the service CA's certificate")
        try:
            key_type_of(csr_public_key)
        except UnsupportedKeyType as exc:
            raise CaError(f"cannot certify this key: {exc}") from None
        crl_point = x509.DistributionPoint(
            full_name=[x509.UniformResourceIdentifier(crl_url)],
            relative_name=None, reasons=None, crl_issuer=None)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.certificate.subject)
            .public_key(csr_public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(csr_public_key),
                           critical=False)
            .add_extension(self._authority_key_id(), critical=False)
            .add_extension(x509.CRLDistributionPoints([crl_point]), critical=False)
            .add_extension(results.extension(result), critical=False)
        )
        return builder.sign(self.key, self._hash)

    def crl(
        self,
        revoked: Sequence[tuple[int | str, dt.datetime, Reason] | Revoked],
        *,
        now: dt.datetime,
        next_update: dt.datetime,
        number: int | None = None,
    ) -> x509.CertificateRevocationList:
        """The CRL listing ``revoked`` ((serial, revoked_at, reason) each: an int or hex
        serial, so :meth:`attestcall.service.storage.Storage.revoked` fits as it is),
        issued at ``now``, next update ``next_update``. ``number`` (the CRL number) defaults to
        ``now`` in milliseconds since the epoch, which grows with every later CRL."""
        now = _aware(now, "now")
        next_update = _aware(next_update, "next_update")
        if next_update <= now:
            raise CaError("the CRL's next update must come after its issue time")
        if number is None:
            number = int(now.timestamp() * 1000)
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.certificate.subject)
            .last_update(now)
            .next_update(next_update)
            .add_extension(self._authority_key_id(), critical=False)
            .add_extension(x509.CRLNumber(number), critical=False)
        )
        for entry in revoked:
            serial, revoked_at, reason = (
                (entry.serial, entry.revoked_at, entry.reason) if isinstance(entry, Revoked)
                else entry)
            item = (x509.RevokedCertificateBuilder()
                    .serial_number(_serial(serial))
                    .revocation_date(_aware(revoked_at, "revoked_at")))
            flag = _reason_flag(reason)
            if flag is not None:
                item = item.add_extension(x509.CRLReason(flag), critical=False)
            builder = builder.add_revoked_certificate(item.build())
        return builder.sign(self.key, self._hash)

    def pem(self) -> bytes:
        """The CA certificate, PEM (what tenants trust)."""
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def _authority_key_id(self) -> x509.AuthorityKeyIdentifier:
        return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(self._ski)


# ---------------------------------------------------------------------- files


def publish(home: Path, name: str, write: Callable[[Path], None]) -> None:
    """Write ``name`` in ``home`` atomically: ``write(path)`` fills a temporary file, which is
    then hard-linked to ``name`` unless another process got there first (theirs wins)."""
    scratch = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=home))
    try:
        path = scratch / name
        write(path)
        try:
            os.link(path, home / name)
        except FileExistsError:
            pass
    except OSError as exc:
        raise CaError(f"cannot create {home / name}: {exc.strerror or exc}") from None
    finally:
        for leftover in scratch.iterdir():
            leftover.unlink()
        scratch.rmdir()


def read_private_key(path: Path, what: str) -> PrivateKeyTypes:
    """The unencrypted PEM private key in ``path`` (``what``: "the CA key", ...), refused
    when the file is readable by group or others."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise CaError(f"cannot open {what} {path}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as handle:
        mode = stat.S_IMODE(os.fstat(handle.fileno()).st_mode)
        if mode & 0o077:
            raise CaKeyExposed(f"{what} {path} is readable by group or others "
                               f"(mode {mode:o}); fix it with chmod 600")
        data = handle.read()
    try:
        return serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise CaError(f"{path} is not an unencrypted PEM private key") from None


def existing_key_type(home: Path | str) -> str | None:
    """The key type of the CA already in ``home``, or None when there is none yet."""
    path = Path(home) / KEY_FILE
    if not path.exists():
        return None
    return key_type_of(_read_key(path).public_key())


def _read_key(path: Path) -> CertificateIssuerPrivateKeyTypes:
    key = read_private_key(path, "the CA key")
    try:
        key_type = key_type_of(key.public_key())  # type: ignore[arg-type]
    except UnsupportedKeyType as exc:
        raise CaError(f"the CA key {path} cannot be used: {exc}") from None
    if key_type not in CA_KEY_TYPES:
        raise CaError(f"the CA key {path} is {key_type}; the CA signs with "
                      f"{', '.join(CA_KEY_TYPES)}")
    return key  # type: ignore[return-value]


def _read_certificate(path: Path, key: CertificateIssuerPrivateKeyTypes) -> x509.Certificate:
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except OSError as exc:
        raise CaError(f"cannot read the CA certificate {path}: {exc.strerror or exc}") \
            from None
    except ValueError:
        raise CaError(f"{path} is not a PEM certificate") from None
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    if (cert.public_key().public_bytes(serialization.Encoding.DER, public)
            != key.public_key().public_bytes(serialization.Encoding.DER, public)):
        raise CaError(f"the CA certificate {path} is not for the key {path.parent / KEY_FILE}")
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    except (x509.ExtensionNotFound, ValueError):
        constraints = None
    if constraints is None or not constraints.ca:
        raise CaError(f"{path} is not a CA certificate with a subject key identifier")
    return cert


def _self_signed(key: CertificateIssuerPrivateKeyTypes) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_NAME)])
    public_key = key.public_key()
    ski = x509.SubjectKeyIdentifier.from_public_key(public_key)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=False, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                       critical=False)
        .sign(key, signature_hash(key_type_of(public_key)))
    )
