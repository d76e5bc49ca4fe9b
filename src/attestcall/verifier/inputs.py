"""What the Python API takes, checked in one place, so a wrong argument is a UsageError
with a message rather than a TypeError (or worse, a nonce that silently never matches).

The rule for file-or-content arguments (``collateral``, ``certs``, ``policy``):

- an ``os.PathLike`` (``pathlib.Path``) is a path: the file is read;
- ``bytes`` (or ``bytearray``, ``memoryview``) and ``str`` are the content itself;
- deprecated: a ``str`` that does not look like its content (JSON for collateral, PEM
  for certificates, TOML for a policy) but names an existing file is still read as that
  file, with a :class:`DeprecationWarning`. Any other such ``str`` is an error of its kind
  (:class:`CollateralError`, :class:`PolicyError`), never a failed attempt at opening it.

:func:`verify_arguments` applies all of it to ``attestcall.verify``'s arguments; a reusable
verifier calls the same function (or the single-argument ones below) for the same rule.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attestcall.abi import NONCE_SIZE
from attestcall.errors import AttestcallError, CollateralError, PolicyError, UsageError

_BYTES = (bytes, bytearray, memoryview)
# values no collateral source takes: a wrong argument, not an odd source object
_NEVER_SOURCES = (bool, int, float, complex, list, tuple, set, frozenset)


@dataclass(frozen=True)
class VerifyArguments:
    """``attestcall.verify``'s arguments, checked: bytes evidence, a 64-byte nonce or None,
    and file-or-content values resolved to a ``Path`` or ``bytes`` (or passed through when
    already loaded: a mapping, a Policy, a collateral or certificate source)."""

    evidence: bytes
    nonce: bytes | None
    policy: Any
    collateral: Any


def verify_arguments(evidence: Any, *, nonce: Any = None, policy: Any = None,
                     collateral: Any = None, certs: Any = None, technology: Any = None,
                     collateral_url: Any = None, trust_simulated: Any = False,
                     ) -> VerifyArguments:
    """Check every argument of ``attestcall.verify`` (UsageError naming the first wrong
    one); ``collateral`` and ``certs`` are one value (at most one may be given)."""
    if technology is not None and not isinstance(technology, str):
        raise UsageError(_wrong("technology", "a technology name (str)", technology))
    if collateral_url is not None and not isinstance(collateral_url, str):
        raise UsageError(_wrong("collateral_url", "a URL (str)", collateral_url))
    if not isinstance(trust_simulated, bool):
        raise UsageError(_wrong("trust_simulated", "True or False", trust_simulated))
    if collateral is not None and certs is not None:
        raise UsageError("give collateral (Intel) or certs (AMD), not both")
    if certs is not None:
        given = certs_input(certs)
    else:
        given = collateral_input(collateral)
    return VerifyArguments(evidence_bytes(evidence), nonce_bytes(nonce), policy_input(policy),
                           given)


def evidence_bytes(value: Any) -> bytes:
    """The evidence as bytes; UsageError for anything else (a str is never evidence)."""
    if isinstance(value, _BYTES):
        return bytes(value)
    hint = " (read the file in binary mode)" if isinstance(value, str) else ""
    raise UsageError(_wrong("evidence", "bytes", value) + hint)


def nonce_bytes(value: Any) -> bytes | None:
    """The 64-byte nonce, or None; a hex ``str`` is refused with a hint, not compared."""
    if value is None:
        return None
    if isinstance(value, str):
        raise UsageError(f"the nonce must be {NONCE_SIZE} bytes, got a str; for hex text "
                         "pass bytes.fromhex(text)")
    if not isinstance(value, _BYTES):
        raise UsageError(_wrong("nonce", f"{NONCE_SIZE} bytes", value))
    if len(value) != NONCE_SIZE:
        raise UsageError(f"the nonce must be {NONCE_SIZE} bytes, got {len(value)}")
    return bytes(value)


def collateral_input(value: Any) -> Any:
    """Intel collateral: a Path, the JSON as bytes or str, a mapping, or a loaded object."""
    return _file_or_content(value, "collateral", CollateralError, _looks_like_json)


def certs_input(value: Any) -> Any:
    """AMD certificates: a Path, DER/PEM/certificate-table bytes, PEM text, or a source."""
    return _file_or_content(value, "certs", CollateralError, _looks_like_pem)


def crl_input(value: Any) -> Any:
    """A separate revocation list (``crl=``): a Path, DER/PEM bytes or PEM text."""
    return _file_or_content(value, "crl", CollateralError, _looks_like_pem)


def policy_input(value: Any) -> Any:
    """A policy: a Path, TOML as bytes or str, a mapping or a Policy (None: the default)."""
    from attestcall.verifier.policy import Policy

    if value is None or isinstance(value, Mapping | Policy):
        return value
    if not isinstance(value, (str, os.PathLike, *_BYTES)):
        raise UsageError(_wrong("policy", "a Path, TOML text or bytes, a mapping or a "
                                "Policy", value))
    return _file_or_content(value, "policy", PolicyError, _looks_like_toml)


def _file_or_content(value: Any, what: str, error: type[AttestcallError],
                     looks_like: Callable[[str], bool]) -> Any:
    if value is None or isinstance(value, Mapping):
        return value
    if isinstance(value, os.PathLike):
        return Path(value)
    if isinstance(value, _BYTES):
        return bytes(value)
    if isinstance(value, _NEVER_SOURCES):
        raise UsageError(_wrong(what, "a Path, bytes or str content", value))
    if not isinstance(value, str):
        return value  # an already loaded object: its TEE's source takes it or says why not
    if looks_like(value):
        return value.encode("utf-8", "surrogateescape")
    if _is_file(value):
        warnings.warn(f"{what}: a str naming a file is deprecated; pass pathlib.Path({value!r}) "
                      "(a str is content)", DeprecationWarning, stacklevel=_caller_level())
        return Path(value)
    shown = repr(value) if len(value) <= 60 else repr(value[:60]) + "..."
    raise error(f"{what} {shown} is neither its content nor an existing file (a str is "
                "content; pass a pathlib.Path for a file)")


def _caller_level() -> int:
    """The ``stacklevel`` of the first frame outside attestcall (whoever passed the str)."""
    frame, level = sys._getframe(1), 1
    while frame.f_back is not None and frame.f_globals.get("__name__", "").startswith(
            "attestcall."):
        frame, level = frame.f_back, level + 1
    return level


def _is_file(text: str) -> bool:
    try:
        return os.path.isfile(text)
    except (ValueError, OSError):  # an embedded NUL, a name too long for the system
        return False


def _looks_like_json(text: str) -> bool:
    return text.lstrip().startswith(("{", "["))


def _looks_like_pem(text: str) -> bool:
    return "-----BEGIN" in text


def _looks_like_toml(text: str) -> bool:
    stripped = text.strip()
    return not stripped or "\n" in stripped or "=" in stripped or stripped[0] in "[#"


def _wrong(what: str, expected: str, value: Any) -> str:
    return f"{what} must be {expected}, not {type(value).__name__}"
