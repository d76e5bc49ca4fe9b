"""Exception types shared across attestcall. Errors are types, never strings to compare."""


class AttestcallError(Exception):
    """Base of every error attestcall raises on purpose."""


class PayloadError(AttestcallError):
    """The payload cannot be run: not found, not executable, not x86-64, not a valid module.

    ``str()`` is one line meant for a person."""


class UsageError(AttestcallError):
    """A bad command-line invocation or option value."""


class HostError(AttestcallError):
    """The untrusted host could not serve a request; the reply's status carries ``code``
    (an errno)."""

    def __init__(self, message: str, code: int = 5):  # 5 = EIO
        super().__init__(message)
        self.code = code


class SimStateError(AttestcallError):
    """The simulated platform state directory is missing, unreadable or corrupt."""


class EvidenceError(AttestcallError):
    """The evidence is unusable: truncated, malformed, of an unknown format (exit status 2)."""


class CollateralError(AttestcallError):
    """Collateral or certificates given are unusable: not JSON, missing fields, not a
    certificate (exit status 2). Collateral that parses but fails a check is a rejection."""


class CollateralUnavailable(CollateralError):
    """The collateral service could not be had just now: unreachable, timed out, or it
    answered with a server error or a rate limit. Transient: asking again later may work
    (the attestation service answers 503, not a refusal). ``retry_after``: seconds the
    service asked to be left alone (HTTP 429 or 503 Retry-After), when it said."""

    retry_after: float | None = None


class CollateralMissing(CollateralError):
    """The collateral asked for is not to be had: the upstream has none (HTTP 404), or an
    offline collateral cache holds none and may not ask (the service answers 404 on its
    PCCS/KDS paths and refuses a verification that needs it)."""


class PolicyError(AttestcallError):
    """The policy file is unreadable, not TOML, or has an unknown key or a bad value."""


class BackendUnavailable(AttestcallError):
    """A real TEE interface was asked for but this machine does not offer it."""


class StorageError(AttestcallError):
    """The attestation service's database refused or failed an operation."""


class StorageUnavailable(StorageError):
    """The database cannot be reached, opened or read (the service answers 503 and recovers
    without a restart once it is back)."""


class SchemaTooNew(StorageError):
    """The database was upgraded by a newer attestcall: this one refuses to start on it."""


class StorageConflict(StorageError):
    """A row the operation would write already exists (an issued serial, most often)."""


class MeasurementDenied(StorageError):
    """A certificate was about to be recorded for a measurement on the deny-list."""
