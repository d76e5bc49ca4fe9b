"""Value checkers for policy tables: each takes (where, raw TOML value) and returns the
normalised value, or raises PolicyError naming ``where``. TEE plugins build their policy
schema from these (see attestcall.tees.PolicyTable)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from attestcall.errors import PolicyError

Checker = Callable[[str, Any], Any]

_HEX = re.compile(r"(?:[0-9a-fA-F]{2})*")


def boolean(where: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise PolicyError(f"{where} must be true or false")
    return value


def uint(bits: int) -> Checker:
    def check(where: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << bits:
            raise PolicyError(f"{where} must be an integer from 0 to {(1 << bits) - 1}")
        return value

    return check


def hex_list(size: int) -> Checker:
    """A list of hex strings of ``size`` bytes each (digits only: no spaces, no 0x),
    normalised to lower case."""

    def check(where: str, value: Any) -> tuple[str, ...]:
        if not isinstance(value, list):
            raise PolicyError(f"{where} must be a list of hex strings")
        out = []
        for item in value:
            hexed = isinstance(item, str) and _HEX.fullmatch(item) is not None
            raw = bytes.fromhex(item) if hexed else None
            if raw is None or len(raw) != size:
                raise PolicyError(f"{where}: {item!r} is not {size * 2} hex digits")
            out.append(raw.hex())
        return tuple(out)

    return check


def strings(where: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise PolicyError(f"{where} must be a list of strings")
    return tuple(value)


def uint_list(bits: int) -> Checker:
    one = uint(bits)

    def check(where: str, value: Any) -> tuple[int, ...]:
        if not isinstance(value, list):
            raise PolicyError(f"{where} must be a list of integers")
        return tuple(one(where, v) for v in value)

    return check


def uint_table(fields: Sequence[str], bits: int, example: str) -> Checker:
    """A table of named unsigned integers, such as ``{ snp = 8, microcode = 115 }``."""
    one = uint(bits)

    def check(where: str, value: Any) -> dict[str, int]:
        if not isinstance(value, dict):
            raise PolicyError(f"{where} must be a table such as {example}")
        out = {}
        for name, number in value.items():
            if name not in fields:
                raise PolicyError(f"{where}: unknown TCB field {name!r}; "
                                  f"known: {', '.join(fields)}")
            out[name] = one(f"{where}.{name}", number)
        return out

    return check


class Reason(str):
    """A policy's reason to refuse: text for a person, as every reason is, that also names
    the policy ``key`` that refused (``"mrenclave"``, ``"accept_tcb_status"``, ...; None when
    no one key did). The attestation result (:mod:`attestcall.ear`) reads the key to tell
    which aspect of trustworthiness a refusal speaks about; everything else sees a str."""

    key: str | None

    def __new__(cls, text: str, key: str | None = None) -> Reason:
        reason = super().__new__(cls, text)
        reason.key = key
        return reason

    def __reduce__(self) -> tuple[Any, ...]:
        return (Reason, (str(self), self.key))


def allow_lists(table: Any, claims: Any, keys: Sequence[str]) -> list[str]:
    """Reasons for every allow-list key of ``table`` (non-empty) whose claim of the same
    name is not in it."""
    reasons: list[str] = []
    for key in keys:
        allowed = table.get(key)
        if allowed and claims.get(key) not in allowed:
            reasons.append(Reason(f"{key} {claims.get(key)} is not in the policy's allow-list",
                                  key))
    return reasons
