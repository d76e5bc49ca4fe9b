"""Exception types shared across attestcall. Errors are types, never strings to compare."""


class AttestcallError(Exception):
    """Base of every error attestcall raises on purpose."""


class PayloadError(AttestcallError):
    """The payload cannot be run: not found, not executable, not x86-64, not a valid module.

    ``str()`` is one line meant for a person."""


class UsageError(AttestcallError):
    """A bad command-line invocation or option value."""


class SimStateError(AttestcallError):
    """The simulated platform state directory is missing, unreadable or corrupt."""
