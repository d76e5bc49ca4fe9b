"""The tenant's policy: which evidence, already proven genuine, it is willing to trust.

A TOML file with one table per technology; every key is optional and an unknown key is an
error. Allow-lists are lists of hex strings (an absent or empty list allows anything).
See the README for an example per technology.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attestcall.appraisal import Appraisal
from attestcall.errors import PolicyError

DEFAULT_ACCEPTED_TCB = ("UpToDate", "SWHardeningNeeded")
INTEL_TCB_STATUSES = (
    "UpToDate",
    "SWHardeningNeeded",
    "ConfigurationNeeded",
    "ConfigurationAndSWHardeningNeeded",
    "OutOfDate",
    "OutOfDateConfigurationNeeded",
    "Revoked",
)
SNP_TCB_FIELDS = ("fmc", "bootloader", "tee", "snp", "microcode")



# -- value checkers: (table, key, raw value) -> normalised value --------------------------


def _bool(where: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise PolicyError(f"{where} must be true or false")
    return value


def _uint(bits: int) -> Callable[[str, Any], int]:
    def check(where: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << bits:
            raise PolicyError(f"{where} must be an integer from 0 to {(1 << bits) - 1}")
        return value

    return check


def _hex_list(size: int) -> Callable[[str, Any], tuple[str, ...]]:
    def check(where: str, value: Any) -> tuple[str, ...]:
        if not isinstance(value, list):
            raise PolicyError(f"{where} must be a list of hex strings")
        out = []
        for item in value:
            try:
                raw = bytes.fromhex(item) if isinstance(item, str) else None
            except ValueError:
                raw = None
            if raw is None or len(raw) != size:
                raise PolicyError(f"{where}: {item!r} is not {size * 2} hex digits")
            out.append(raw.hex())
        return tuple(out)

    return check


def _statuses(where: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise PolicyError(f"{where} must be a list of TCB status strings")
    for status in value:
        if status == "Revoked":
            raise PolicyError(f"{where}: a Revoked TCB is never accepted")
        if status not in INTEL_TCB_STATUSES:
            raise PolicyError(f"{where}: unknown TCB status {status!r}; "
                              f"known: {', '.join(INTEL_TCB_STATUSES)}")
    return tuple(value)


def _strings(where: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise PolicyError(f"{where} must be a list of strings")
    return tuple(value)


def _uint_list(bits: int) -> Callable[[str, Any], tuple[int, ...]]:
    one = _uint(bits)

    def check(where: str, value: Any) -> tuple[int, ...]:
        if not isinstance(value, list):
            raise PolicyError(f"{where} must be a list of integers")
        return tuple(one(where, v) for v in value)

    return check


def _snp_tcb(where: str, value: Any) -> dict[str, int]:
    if not isinstance(value, dict):
        raise PolicyError(f"{where} must be a table such as {{ snp = 8, microcode = 115 }}")
    out = {}
    for name, svn in value.items():
        if name not in SNP_TCB_FIELDS:
            raise PolicyError(f"{where}: unknown TCB field {name!r}; "
                              f"known: {', '.join(SNP_TCB_FIELDS)}")
        out[name] = _uint(8)(f"{where}.{name}", svn)
    return out


_INTEL_COMMON: dict[str, Callable[[str, Any], Any]] = {
    "allow_debug": _bool,
    "accept_tcb_status": _statuses,
    "refuse_advisories": _strings,
}

SCHEMA: dict[str, dict[str, Callable[[str, Any], Any]]] = {
    "sgx": {
        **_INTEL_COMMON,
        "mrenclave": _hex_list(32),
        "mrsigner": _hex_list(32),
        "isv_prod_id": _uint_list(16),
        "min_isv_svn": _uint(16),
    },
    "tdx": {
        **_INTEL_COMMON,
        "mrtd": _hex_list(48),
        "rtmr0": _hex_list(48),
        "rtmr1": _hex_list(48),
        "rtmr2": _hex_list(48),
        "rtmr3": _hex_list(48),
        "mrconfigid": _hex_list(48),
        "mrowner": _hex_list(48),
        "mrownerconfig": _hex_list(48),
    },
    "snp": {
        "allow_debug": _bool,
        "measurement": _hex_list(48),
        "min_tcb": _snp_tcb,
        "vmpl": _uint_list(2),
        "host_data": _hex_list(32),
        "id_key_digest": _hex_list(48),
        "author_key_digest": _hex_list(48),
        "allow_migration_agent": _bool,
        "allow_smt": _bool,
    },
    # deployment only: a keep outside any TEE is refused unless allowed here
    "none": {"allow": _bool},
    # SEV pre-attestation (deployment): the launch digests the tenant accepts, and debug
    "sev": {"launch_digest": _hex_list(32), "allow_debug": _bool},
}

# allow-list keys whose claim has the same name
_ALLOW_LISTS = {
    "sgx": ("mrenclave", "mrsigner", "isv_prod_id"),
    "tdx": ("mrtd", "rtmr0", "rtmr1", "rtmr2", "rtmr3", "mrconfigid", "mrowner", "mrownerconfig"),
    "snp": ("measurement", "vmpl", "host_data", "id_key_digest", "author_key_digest"),
}


@dataclass(frozen=True)
class Policy:
    """A parsed, validated policy. ``Policy()`` is the default one."""

    tables: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> Policy:
        tables: dict[str, dict[str, Any]] = {}
        for name, table in data.items():
            if name not in SCHEMA:
                raise PolicyError(f"unknown policy table [{name}]; known: {', '.join(SCHEMA)}")
            if not isinstance(table, Mapping):
                raise PolicyError(f"[{name}] must be a table")
            checked = {}
            for key, value in table.items():
                check = SCHEMA[name].get(key)
                if check is None:
                    raise PolicyError(f"unknown key {key!r} in [{name}]; "
                                      f"known: {', '.join(SCHEMA[name])}")
                checked[key] = check(f"[{name}] {key}", value)
            tables[name] = checked
        return cls(tables)

    @classmethod
    def load(cls, source: Policy | Mapping[str, Any] | str | Path | None) -> Policy:
        """A Policy from a path to a TOML file, an already-parsed mapping, or None."""
        if source is None:
            return cls()
        if isinstance(source, Policy):
            return source
        if isinstance(source, Mapping):
            return cls.parse(source)
        try:
            text = Path(source).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise PolicyError(f"cannot read policy {source}: {exc}") from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise PolicyError(f"policy {source} is not valid TOML: {exc}") from None
        return cls.parse(data)

    def get(self, technology: str, key: str, default: Any = None) -> Any:
        return self.tables.get(technology, {}).get(key, default)

    def allows_none(self) -> bool:
        """Whether a keep outside any TEE (technology 0) may receive a workload."""
        return bool(self.get("none", "allow", False))

    def check(self, appraisal: Appraisal) -> list[str]:
        """Every reason this policy refuses the (genuine) evidence; empty when it accepts."""
        tech = appraisal.technology
        claims = appraisal.claims
        reasons: list[str] = []
        if appraisal.debug and not self.get(tech, "allow_debug", False):
            reasons.append(f"the {tech.upper()} evidence is from a debug "
                           f"{'guest' if tech == 'snp' else 'enclave' if tech == 'sgx' else 'TD'}"
                           " and the policy does not allow debug")
        if tech in ("sgx", "tdx"):
            reasons += self._check_intel_tcb(appraisal)
        for key in _ALLOW_LISTS[tech]:
            allowed = self.get(tech, key)
            if allowed and claims.get(key) not in allowed:
                reasons.append(f"{key} {claims.get(key)} is not in the policy's allow-list")
        if tech == "sgx":
            minimum = self.get("sgx", "min_isv_svn")
            if minimum is not None and claims["isv_svn"] < minimum:
                reasons.append(f"ISV SVN {claims['isv_svn']} is below the policy's {minimum}")
        if tech == "snp":
            reasons += self._check_snp(claims)
        return reasons

    def _check_intel_tcb(self, appraisal: Appraisal) -> list[str]:
        tech = appraisal.technology
        reasons = []
        accepted = self.get(tech, "accept_tcb_status", DEFAULT_ACCEPTED_TCB)
        if appraisal.tcb_status == "Revoked":
            reasons.append("the platform's TCB is revoked (TCB status Revoked)")
        elif appraisal.tcb_status is not None and appraisal.tcb_status not in accepted:
            reasons.append(f"TCB status {appraisal.tcb_status} is not accepted by the policy "
                           f"(accepted: {', '.join(accepted) or 'none'})")
        refused = set(self.get(tech, "refuse_advisories", ()))
        hit = [a for a in appraisal.advisories if a in refused]
        if hit:
            reasons.append(f"advisories refused by the policy: {', '.join(hit)}")
        return reasons

    def _check_snp(self, claims: Mapping[str, Any]) -> list[str]:
        reasons = []
        for name, minimum in self.get("snp", "min_tcb", {}).items():
            have = claims["reported_tcb"].get(name)
            if have is None:
                reasons.append(f"the reported TCB has no {name} SPL but the policy sets one")
            elif have < minimum:
                reasons.append(f"reported TCB {name} SPL {have} is below the policy's {minimum}")
        if claims.get("migration_agent") and not self.get("snp", "allow_migration_agent", True):
            reasons.append("a migration agent is bound to the guest and the policy refuses it")
        if claims.get("smt_enabled") and not self.get("snp", "allow_smt", True):
            reasons.append("SMT is enabled on the host and the policy refuses it")
        return reasons
