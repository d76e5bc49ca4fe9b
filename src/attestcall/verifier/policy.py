"""The tenant's policy: which evidence, already proven genuine, it is willing to trust.

A TOML file with one table per technology; every key is optional and an unknown key is an
error. Allow-lists are lists of hex strings (an absent or empty list allows anything).
Each table belongs to a registered TEE, whose plugin record gives its schema and its
checks (:class:`attestcall.tees.PolicyTable`); the debug rule is common to every TEE.
See the README for an example per technology.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attestcall.appraisal import Appraisal
from attestcall.errors import PolicyError
from attestcall.schema import Reason
from attestcall.tees import Tee, registry


def _toml(text: str, what: str) -> dict[str, Any]:
    """``tomllib.loads``, every failure a PolicyError: bad TOML, nesting too deep for the
    parser (RecursionError), an integer past Python's digit limit (ValueError)."""
    try:
        return tomllib.loads(text)
    except RecursionError:
        raise PolicyError(f"{what} is not usable TOML: nested too deeply") from None
    except ValueError as exc:  # TOMLDecodeError, and int() beyond sys.get_int_max_str_digits
        raise PolicyError(f"{what} is not valid TOML: {exc}") from None


@dataclass(frozen=True)
class Policy:
    """A parsed, validated policy. ``Policy()`` is the default one."""

    tables: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> Policy:
        tables: dict[str, dict[str, Any]] = {}
        known = [t for t in registry().tees if t.policy is not None]
        for name, table in data.items():
            tee = registry().by_name(name)
            if tee is None or tee.policy is None:
                raise PolicyError(f"unknown policy table [{name}]; known: "
                                  f"{', '.join(t.name for t in known)}")
            if not isinstance(table, Mapping):
                raise PolicyError(f"[{name}] must be a table")
            schema = tee.policy.schema
            checked = {}
            for key, value in table.items():
                check = schema.get(key)
                if check is None:
                    raise PolicyError(f"unknown key {key!r} in [{name}]; "
                                      f"known: {', '.join(schema)}")
                checked[key] = check(f"[{name}] {key}", value)
            tables[name] = checked
        return cls(tables)

    @classmethod
    def from_bytes(cls, data: bytes | None) -> Policy:
        """The policy in a TOML file's bytes (None or empty: the default policy)."""
        if not data:
            return cls()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PolicyError(f"the policy is not valid TOML: {exc}") from None
        return cls.parse(_toml(text, "the policy"))

    @classmethod
    def load(cls, source: Policy | Mapping[str, Any] | str | bytes | os.PathLike[str] | None,
             ) -> Policy:
        """A Policy from a path (``os.PathLike``) to a TOML file, TOML text (``str``) or
        bytes, an already-parsed mapping, or None (the rule for ``str``:
        :mod:`attestcall.verifier.inputs`)."""
        from attestcall.verifier.inputs import policy_input

        source = policy_input(source)
        if source is None:
            return cls()
        if isinstance(source, Policy):
            return source
        if isinstance(source, Mapping):
            return cls.parse(source)
        if isinstance(source, bytes):
            return cls.from_bytes(source)
        try:
            text = Path(source).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise PolicyError(f"cannot read policy {source}: {exc}") from None
        return cls.parse(_toml(text, f"policy {source}"))

    def get(self, technology: str, key: str, default: Any = None) -> Any:
        return self.tables.get(technology, {}).get(key, default)

    def allows_none(self) -> bool:
        """Whether a keep outside any TEE (technology 0) may receive a workload."""
        return bool(self.get("none", "allow", False))

    def check(self, appraisal: Appraisal) -> list[str]:
        """Every reason this policy refuses the (genuine) evidence; empty when it accepts."""
        tee: Tee = registry().get(appraisal.technology)
        table = self.tables.get(tee.name, {})
        reasons: list[str] = []
        if appraisal.debug and not table.get("allow_debug", False):
            reasons.append(Reason(f"the {tee.label} evidence is from a debug {tee.debug_word} "
                                  "and the policy does not allow debug", "allow_debug"))
        if tee.policy is not None and tee.policy.check is not None:
            reasons += tee.policy.check(table, appraisal)
        return reasons
