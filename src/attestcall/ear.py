"""Attestation results as EAR claims-sets: one vocabulary for every result attestcall gives.

An EAR (EAT Attestation Result, draft-ietf-rats-ear) is a JSON claims-set a verifier signs
as a JWT. attestcall writes one from a :class:`~attestcall.verifier.verdict.Verdict` with
the claim names Veraison's and Trustee's verifiers emit today (``ear.status``,
``ear.trustworthiness-vector``, ...; the latest draft respells them with underscores).
The same claims-set is the attestation service's token (signed, ``POST /v1/attestation``),
the certificate's result extension (unsigned: the certificate's signature covers it,
:mod:`attestcall.service.result`) and ``attestcall verify --ear``. This module is sans-I/O:
claims in, claims or bytes out; signing is the service's. :func:`decode` reads the one
canonical encoding of a claims-set of attestcall's profile (the certificate's extension);
:func:`parse` reads any producer's EAR claims-set. Both ignore claims they do not know and
check the ones they do strictly (see :func:`check`).

The claims-set::

    eat_profile        PROFILE
    iat, exp           issued at, expires (integer Unix seconds; exp optional)
    ear.verifier-id    {"developer": DEVELOPER, "build": "attestcall <version>"}
    eat_nonce          the caller's nonce or challenge, base64url (when one was given)
    submods            {"<technology name>": appraisal}, one entry

and each appraisal::

    ear.status                       "affirming" / "warning" / "contraindicated" / "none"
    ear.trustworthiness-vector       AR4SI claims (below), integers
    ear.appraisal-policy-id          "policy:sha256:<hex of the policy file's bytes>"
    ear.veraison.annotated-evidence  the verdict's claims, as ``verify --json`` names them
    attestcall.technology-id         the get_attestation technology id
    attestcall.tcb-status            the vendor's TCB status (absent when it has none)
    attestcall.advisories            advisory ids, in the verdict's order
    attestcall.reasons               why the verdict refused (empty when it accepted)
    attestcall.simulated             whether the evidence came from a simulator

**The mapping** from a verdict to the trustworthiness vector is :data:`TCB_STATUS`,
:data:`POLICY_KEYS` and :data:`APPROVED` below, as data (the README shows them as a
table); the values are AR4SI's standard code points (draft-ietf-rats-ar4si section 3.2):

- evidence not proven genuine (any appraisal problem), or whose report data does not bind
  the nonce: every claim below is 99, "cryptographic validation of the Evidence has failed";
- ``instance-identity`` 2: signed by a key that chains to the vendor's pinned root and is
  not revoked;
- ``hardware`` and ``configuration`` from the TCB status (:data:`TCB_STATUS`); evidence with
  none (SNP: its VCEK's TCB matched) has ``hardware`` 2 and no ``configuration`` claim;
- ``runtime-opaque`` 2 (memory encrypted, opaque to the host), 96 for a debug instance
  (whose memory the host can read), even when the policy allowed debug;
- a policy key that refused (:class:`attestcall.schema.Reason`) makes its claim 96
  (:data:`POLICY_KEYS`); a policy that constrains measurement or configuration keys and
  passes makes ``executables`` or ``configuration`` 2 (:data:`APPROVED`);
- a keep without a TEE (technology 0): ``runtime-opaque`` 96 and nothing else.

Claims attestcall cannot speak to (``file-system``, ``storage-opaque``, ``sourced-data``)
are absent, which AR4SI reads as "no claim". Within a claim the least trustworthy tier
wins (AR4SI 3.2.1), and within a tier the stronger standard statement (the smaller value).
``ear.status`` is the worst tier in the vector, and ``contraindicated`` whenever the
verdict refused, even for a refusal no vector claim names.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

from attestcall import __version__
from attestcall.abi import Technology
from attestcall.errors import AttestcallError
from attestcall.tees import registry
from attestcall.verifier.policy import Policy
from attestcall.verifier.verdict import Verdict

# attestcall's EAR profile. A tag URI (RFC 4151) under a name no one else can hold
# (RFC 2606's .invalid): the project has no domain of its own yet; changing the profile is
# an incompatible change for relying parties.
PROFILE = "tag:attestcall.invalid,2026:ear#1"
DEVELOPER = "https://attestcall.invalid"
BUILD = f"attestcall {__version__}"
POLICY_ID_PREFIX = "policy:sha256:"

# Claim names (JSON).
EAT_PROFILE, IAT, EXP, NONCE, SUBMODS = "eat_profile", "iat", "exp", "eat_nonce", "submods"
VERIFIER_ID = "ear.verifier-id"
STATUS = "ear.status"
VECTOR = "ear.trustworthiness-vector"
POLICY_ID = "ear.appraisal-policy-id"
ANNOTATED_EVIDENCE = "ear.veraison.annotated-evidence"
TECHNOLOGY_ID = "attestcall.technology-id"
TCB_STATUS_CLAIM = "attestcall.tcb-status"
ADVISORIES = "attestcall.advisories"
REASONS = "attestcall.reasons"
SIMULATED = "attestcall.simulated"

# AR4SI trustworthiness claims.
INSTANCE_IDENTITY = "instance-identity"
CONFIGURATION = "configuration"
EXECUTABLES = "executables"
FILE_SYSTEM = "file-system"
HARDWARE = "hardware"
RUNTIME_OPAQUE = "runtime-opaque"
STORAGE_OPAQUE = "storage-opaque"
SOURCED_DATA = "sourced-data"
AR4SI_CLAIMS = (INSTANCE_IDENTITY, CONFIGURATION, EXECUTABLES, FILE_SYSTEM, HARDWARE,
                RUNTIME_OPAQUE, STORAGE_OPAQUE, SOURCED_DATA)

# The tiers, least trustworthy last; their values' ranges (standard and private).
NONE, AFFIRMING, WARNING, CONTRAINDICATED = "none", "affirming", "warning", "contraindicated"
TIERS = (NONE, AFFIRMING, WARNING, CONTRAINDICATED)

# The standard code points attestcall assigns, and what AR4SI says they mean.
CODE_POINTS: dict[tuple[str, int], str] = {
    (INSTANCE_IDENTITY, 2): "recognized, and not known to be compromised",
    (HARDWARE, 2): "genuine and supported hardware and firmware",
    (HARDWARE, 32): "genuine hardware and firmware with known security vulnerabilities",
    (HARDWARE, 96): "recognized hardware or firmware whose trustworthiness is contraindicated",
    (HARDWARE, 1): "evidence contains unknown elements (a TCB status attestcall does not know)",
    (CONFIGURATION, 2): "a known and approved configuration",
    (CONFIGURATION, 3): "a configuration with no known vulnerabilities",
    (CONFIGURATION, 32): "a configuration that exposes known vulnerabilities",
    (CONFIGURATION, 96): "an unsupportable configuration",
    (EXECUTABLES, 2): "only approved executables were loaded",
    (EXECUTABLES, 96): "contraindicated executables were loaded",
    (RUNTIME_OPAQUE, 2): "memory encrypted and opaque to the host, its OS and hypervisor",
    (RUNTIME_OPAQUE, 96): "memory unacceptably visible to the host",
}
CRYPTO_FAILED = 99  # "Cryptographic validation of the Evidence has failed", any claim

# Intel's TCB status -> (hardware, configuration); None: no claim. Evidence with no TCB
# status (SNP) is None here.
TCB_STATUS: dict[str | None, tuple[int, int | None]] = {
    "UpToDate": (2, 3),
    "SWHardeningNeeded": (32, 3),
    "ConfigurationNeeded": (2, 32),
    "ConfigurationAndSWHardeningNeeded": (32, 32),
    "OutOfDate": (32, 3),
    "OutOfDateConfigurationNeeded": (32, 32),
    "Revoked": (96, None),
    None: (2, None),
}
UNKNOWN_TCB_STATUS = (1, None)

# The claim a refusal by each policy key speaks about (value 96). "nonce" (report data not
# binding the nonce) is not here: it makes every claim 99. "deny-list" is the service's.
POLICY_KEYS: dict[str, str] = {
    "accept_tcb_status": HARDWARE,
    "refuse_advisories": HARDWARE,
    "min_tcb": HARDWARE,
    "mrenclave": EXECUTABLES,
    "mrsigner": EXECUTABLES,
    "isv_prod_id": EXECUTABLES,
    "min_isv_svn": EXECUTABLES,
    "mrtd": EXECUTABLES,
    "rtmr0": EXECUTABLES,
    "rtmr1": EXECUTABLES,
    "rtmr2": EXECUTABLES,
    "rtmr3": EXECUTABLES,
    "measurement": EXECUTABLES,
    "id_key_digest": EXECUTABLES,
    "author_key_digest": EXECUTABLES,
    "deny-list": EXECUTABLES,
    "mrconfigid": CONFIGURATION,
    "mrowner": CONFIGURATION,
    "mrownerconfig": CONFIGURATION,
    "host_data": CONFIGURATION,
    "vmpl": CONFIGURATION,
    "allow_migration_agent": CONFIGURATION,
    "allow_smt": CONFIGURATION,
    "allow_debug": RUNTIME_OPAQUE,
}
NONCE_KEY = "nonce"
# The value of a claim whose policy keys constrain and pass.
APPROVED: dict[str, int] = {EXECUTABLES: 2, CONFIGURATION: 2}
REFUSED = 96

# Bounds of what the decoder reads: an EAR's bytes (a result with its evidence's claims is
# a few KiB; the service's request bodies stop at 1 MiB too), instants (iat, exp: up to
# 9999-12-31T23:59:59Z, the last a datetime holds) and another producer's nonce text.
MAX_EAR = 1 << 20
MAX_SECONDS = 253_402_300_799
MAX_NONCE = 88  # base64 of EAT's longest nonce, 64 bytes, with padding


class EarError(AttestcallError):
    """A result that cannot be made into, or read as, attestcall's EAR."""


class MalformedEar(EarError):
    """Bytes or claims that are not a well-formed EAR claims-set (of attestcall's profile,
    where one is asked for)."""


class EarTooLarge(MalformedEar):
    """An EAR over ``MAX_EAR`` bytes, refused before it is parsed."""


# ---------------------------------------------------------------------- tiers


def tier(value: int) -> str:
    """The AR4SI tier of a trustworthiness claim's value (-128..127)."""
    if not -128 <= value <= 127:
        raise EarError(f"a trustworthiness claim of {value} is outside -128..127")
    if -1 <= value <= 1:
        return NONE
    if 2 <= value <= 31 or -32 <= value <= -2:
        return AFFIRMING
    if 32 <= value <= 95 or -96 <= value <= -33:
        return WARNING
    return CONTRAINDICATED


def _rank(value: int) -> tuple[int, int]:
    return TIERS.index(tier(value)), -abs(value)


def worse(current: int | None, candidate: int) -> int:
    """The value AR4SI's assignment order keeps: the less trustworthy tier; within one tier
    the stronger standard statement (the smaller value)."""
    if current is None or _rank(candidate) > _rank(current):
        return candidate
    return current


def status_of(vector: Mapping[str, int], *, refused: bool = False) -> str:
    """``ear.status``: the worst tier in ``vector``; contraindicated when ``refused``."""
    worst = max((TIERS.index(tier(v)) for v in vector.values()), default=0)
    return CONTRAINDICATED if refused else TIERS[worst]


# ---------------------------------------------------------------------- the mapping


def constrains(value: Any) -> bool:
    """Whether a policy value restricts anything: ``allow_* = true`` and empty lists or
    tables are the permissive defaults."""
    if value is True:
        return False
    if isinstance(value, (list, tuple, dict, Mapping)) and not value:
        return False
    return True


def unproven(verdict: Verdict) -> bool:
    """Whether the evidence is not proven genuine, or does not bind the nonce."""
    return bool(verdict.problems) or any(getattr(r, "key", None) == NONCE_KEY
                                         for r in verdict.reasons)


def vector_of(verdict: Verdict, policy: Policy | None = None) -> dict[str, int]:
    """The AR4SI trustworthiness vector of ``verdict`` under ``policy`` (see the module's
    docstring and the tables above)."""
    tee = registry().by_name(verdict.technology)
    if tee is not None and tee.technology == Technology.NONE:
        return {RUNTIME_OPAQUE: REFUSED}
    hardware, configuration = TCB_STATUS.get(verdict.tcb_status, UNKNOWN_TCB_STATUS)
    vector: dict[str, int] = {INSTANCE_IDENTITY: 2, HARDWARE: hardware,
                              RUNTIME_OPAQUE: REFUSED if verdict.debug else 2}
    if configuration is not None:
        vector[CONFIGURATION] = configuration
    table = (policy or Policy()).tables.get(verdict.technology, {})
    keys = {**POLICY_KEYS, **(tee.policy.ear_claims if tee and tee.policy else {})}
    for key, value in table.items():
        claim = keys.get(key)
        if claim in APPROVED and constrains(value):
            vector[claim] = worse(vector.get(claim), APPROVED[claim])
    for reason in verdict.reasons:
        claim = keys.get(getattr(reason, "key", None) or "")
        if claim is not None:
            vector[claim] = worse(vector.get(claim), REFUSED)
    if unproven(verdict):
        vector = dict.fromkeys(vector, CRYPTO_FAILED)
    return {claim: vector[claim] for claim in AR4SI_CLAIMS if claim in vector}


def policy_id(policy_bytes: bytes | None) -> str:
    """``ear.appraisal-policy-id``: the SHA-256 of the policy file's bytes (None or b"":
    the default policy, SHA-256 of nothing)."""
    return POLICY_ID_PREFIX + hashlib.sha256(policy_bytes or b"").hexdigest()


def appraisal(verdict: Verdict, *, policy: Policy | None = None,
              policy_bytes: bytes | None = None) -> dict[str, Any]:
    """The EAR appraisal (one submod) of ``verdict``."""
    tee = registry().by_name(verdict.technology)
    if tee is None:
        raise EarError(f"technology {verdict.technology!r} is not registered")
    vector = vector_of(verdict, policy)
    claims: dict[str, Any] = {
        STATUS: status_of(vector, refused=not verdict.accepted),
        VECTOR: vector,
        POLICY_ID: policy_id(policy_bytes),
        ANNOTATED_EVIDENCE: dict(verdict.claims),
        TECHNOLOGY_ID: tee.technology,
        ADVISORIES: list(verdict.advisories),
        REASONS: [str(r) for r in verdict.reasons],
        SIMULATED: bool(verdict.simulated),
    }
    if verdict.tcb_status is not None:
        claims[TCB_STATUS_CLAIM] = verdict.tcb_status
    return claims


def _seconds(instant: dt.datetime) -> int:
    if instant.tzinfo is None:
        raise EarError("an EAR's instants must be timezone-aware")
    return int(instant.timestamp())


def encode_nonce(nonce: bytes) -> str:
    """``eat_nonce``: base64url without padding (8 to 64 bytes, as EAT allows)."""
    if not 8 <= len(nonce) <= 64:
        raise EarError(f"an eat_nonce is 8 to 64 bytes, not {len(nonce)}")
    return base64.urlsafe_b64encode(nonce).rstrip(b"=").decode()


def claims_set(verdict: Verdict, *, issued_at: dt.datetime,
               expires_at: dt.datetime | None = None, nonce: bytes | None = None,
               policy: Policy | None = None, policy_bytes: bytes | None = None,
               ) -> dict[str, Any]:
    """The EAR claims-set of ``verdict``, issued at ``issued_at`` (and expiring at
    ``expires_at``), echoing ``nonce`` (the caller's nonce or challenge) when given.
    ``policy`` is the parsed ``policy_bytes`` the verdict was reached under."""
    claims: dict[str, Any] = {
        EAT_PROFILE: PROFILE,
        IAT: _seconds(issued_at),
        VERIFIER_ID: {"developer": DEVELOPER, "build": BUILD},
        SUBMODS: {verdict.technology: appraisal(verdict, policy=policy,
                                                policy_bytes=policy_bytes)},
    }
    if expires_at is not None:
        claims[EXP] = _seconds(expires_at)
        if claims[EXP] <= claims[IAT]:
            raise EarError("an EAR must expire after it is issued")
    if nonce is not None:
        claims[NONCE] = encode_nonce(nonce)
    return claims


# ---------------------------------------------------------------------- one encoding


def encode(claims: Mapping[str, Any]) -> bytes:
    """The claims-set's one JSON encoding: UTF-8, keys sorted, no insignificant space."""
    return json.dumps(claims, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def _reject_constant(name: str) -> Any:
    raise MalformedEar(f"the EAR holds {name}, which JSON does not allow")


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise MalformedEar(f"the EAR repeats the member {key!r}")
        found[key] = value
    return found


def _load(data: bytes) -> Any:
    """The JSON value in ``data``: strict UTF-8, no repeated members, no NaN or Infinity, at
    most ``MAX_EAR`` bytes (``EarTooLarge``), nested no deeper than Python's recursion
    allows; else MalformedEar."""
    data = bytes(data)
    if len(data) > MAX_EAR:
        raise EarTooLarge(f"the EAR is {len(data)} bytes; the limit is {MAX_EAR}")
    try:
        return json.loads(data.decode("utf-8"), object_pairs_hook=_unique,
                          parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError, over 4300 digits
        raise MalformedEar(f"the EAR is not UTF-8 JSON: {exc}") from None
    except RecursionError:
        raise MalformedEar("the EAR nests too deep to read") from None


def decode(data: bytes) -> dict[str, Any]:
    """The claims-set in ``data``: MalformedEar unless it is exactly :func:`encode`'s
    encoding of an EAR claims-set of attestcall's profile (:func:`check`). Claims this
    attestcall does not know are kept in the mapping returned, unchecked."""
    claims = _load(data)
    check(claims)
    try:
        canonical = encode(claims)
    except RecursionError:  # read near the stack's limit, too deep to write again
        raise MalformedEar("the EAR nests too deep to read") from None
    if canonical != bytes(data):
        raise MalformedEar("the EAR is not in its canonical encoding (keys sorted, no spaces)")
    return claims


def parse(data: bytes) -> dict[str, Any]:
    """The claims-set of an EAR in JSON from any producer (Veraison's, Trustee's, another
    attestcall's), in any key order and spacing: MalformedEar unless the claims this module
    knows are well-formed (:func:`check` with ``any_profile``). The mapping returned holds
    every claim, the unknown ones unchecked; a claims-set of attestcall's profile is
    checked as :func:`decode` checks it, less the canonical encoding."""
    claims = _load(data)
    check(claims, any_profile=True)
    return claims


_POLICY_ID = re.compile(re.escape(POLICY_ID_PREFIX) + "[0-9a-f]{64}")
_B64URL = re.compile("[A-Za-z0-9_-]+")


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value)


def _expect(condition: bool, what: str) -> None:
    if not condition:
        raise MalformedEar(what)


# Which claims are checked. draft-ietf-rats-ear makes the claims-set and each appraisal
# extensible (its CDDL's $$ear-extension and $$ear-appraisal-extension sockets: registered
# claims and private ones, such as Veraison's ear.veraison.* and ear.raw-evidence): a claim
# this module does not know is ignored, left unchecked in the mapping, so that another
# producer's results and a later attestcall's are read. A known claim is checked strictly
# (type, range, name) wherever it appears.
#
# The trustworthiness vector is not extensible: AR4SI (draft-ietf-rats-ar4si, section 2.3.2,
# which EAR embeds as is) defines it as a non-empty map of its eight claims, with no
# extension socket, and Veraison's implementation (veraison/ear, ToTrustVector) refuses any
# other key. A vector claim is also a trustworthiness statement that ear.status must not be
# more trusting than: ignoring one that cannot be read could hide a producer's
# contraindication. So an unknown key in the vector is refused, not ignored.
# ear.verifier-id is likewise AR4SI's closed {developer, build}.


def check(claims: Any, *, any_profile: bool = False) -> None:
    """MalformedEar unless ``claims`` is a well-formed EAR claims-set of this profile (with
    ``any_profile``: of any producer's; one of this profile is still held to it). Unknown
    claims are ignored (see above)."""
    _expect(isinstance(claims, dict), "an EAR is a JSON object")
    profile = claims.get(EAT_PROFILE)
    if any_profile:
        _expect(_text(profile), "the EAR's eat_profile is not a string")
    else:
        _expect(profile == PROFILE, f"the EAR's eat_profile is not {PROFILE}")
    ours = profile == PROFILE
    _expect(_int(claims.get(IAT)) and 0 <= claims[IAT] <= MAX_SECONDS,
            "the EAR's iat is not an integer of seconds")
    if EXP in claims:
        _expect(_int(claims[EXP]) and claims[IAT] < claims[EXP] <= MAX_SECONDS,
                "the EAR's exp is not an integer after iat")
    verifier = claims.get(VERIFIER_ID)
    _expect(isinstance(verifier, dict) and set(verifier) == {"developer", "build"}
            and all(_text(v) for v in verifier.values()),
            "the EAR's ear.verifier-id is not {developer, build}")
    if NONCE in claims:
        _check_nonce(claims[NONCE], ours)
    submods = claims.get(SUBMODS)
    _expect(isinstance(submods, dict) and bool(submods),
            "the EAR's submods is not an object of appraisals")
    if ours:
        _expect(len(submods) == 1, "the EAR's submods must hold exactly one appraisal")
    for name, item in submods.items():
        _expect(bool(name), "the EAR has a submod without a name")
        _check_appraisal(name, item, ours)


def _check_nonce(nonce: Any, ours: bool) -> None:
    """attestcall's eat_nonce is 8 to 64 bytes in base64url; another producer's one text
    nonce, or a list of them (EAT allows several), each at most MAX_NONCE characters."""
    if ours:
        _expect(isinstance(nonce, str) and _B64URL.fullmatch(nonce) is not None
                and 11 <= len(nonce) <= 86 and len(nonce) % 4 != 1,
                "the EAR's eat_nonce is not 8 to 64 bytes in base64url")
        return
    nonces = nonce if isinstance(nonce, list) else [nonce]
    _expect(bool(nonces) and all(_text(n) and len(n) <= MAX_NONCE for n in nonces),
            f"the EAR's eat_nonce is not a text of at most {MAX_NONCE} characters, or a "
            "list of them")


def _check_appraisal(name: str, item: Any, ours: bool) -> None:
    where = f"the EAR's {name!r} appraisal"
    _expect(isinstance(item, dict), f"{where} is not an object")
    required = {STATUS, VECTOR, POLICY_ID, ANNOTATED_EVIDENCE, TECHNOLOGY_ID, ADVISORIES,
                REASONS, SIMULATED} if ours else {STATUS}
    _expect(required <= set(item), f"{where} lacks {', '.join(sorted(required - set(item)))}")
    _expect(item[STATUS] in TIERS, f"{where}'s ear.status is not a tier "
            f"({', '.join(TIERS)})")
    if VECTOR in item:
        vector = item[VECTOR]
        _expect(isinstance(vector, dict) and bool(vector)
                and all(k in AR4SI_CLAIMS and _int(v) and -128 <= v <= 127
                        for k, v in vector.items()),
                f"{where}'s trustworthiness vector is not AR4SI claims of -128..127")
        worst = status_of(vector)
        _expect(TIERS.index(item[STATUS]) >= TIERS.index(worst),
                f"{where}'s ear.status {item[STATUS]} is more trusting than its vector "
                f"({worst})")
    if POLICY_ID in item:
        policy = item[POLICY_ID]
        if ours:
            _expect(isinstance(policy, str) and _POLICY_ID.fullmatch(policy) is not None,
                    f"{where}'s ear.appraisal-policy-id is not policy:sha256:<hex>")
        else:
            _expect(_text(policy), f"{where}'s ear.appraisal-policy-id is not a string")
    if ANNOTATED_EVIDENCE in item:
        _expect(isinstance(item[ANNOTATED_EVIDENCE], dict),
                f"{where}'s evidence is not an object")
    # attestcall's own claims: its namespace, so checked under any profile
    if TECHNOLOGY_ID in item:
        _expect(_int(item[TECHNOLOGY_ID]) and 0 <= item[TECHNOLOGY_ID] <= 0xFFFF_FFFF,
                f"{where}'s technology id is not an unsigned 32-bit integer")
    for key in (ADVISORIES, REASONS):
        if key in item:
            _expect(isinstance(item[key], list) and all(isinstance(a, str) for a in item[key]),
                    f"{where}'s {key} is not a list of strings")
    if SIMULATED in item:
        _expect(isinstance(item[SIMULATED], bool), f"{where}'s {SIMULATED} is not a boolean")
    if TCB_STATUS_CLAIM in item:
        _expect(_text(item[TCB_STATUS_CLAIM]), f"{where}'s TCB status is not a string")


def decode_nonce(text: str) -> bytes:
    """The bytes of an ``eat_nonce`` (base64url, padding optional)."""
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise MalformedEar("the eat_nonce is not base64url") from None


def only_appraisal(claims: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The one submod of a checked claims-set: its name and its appraisal."""
    ((name, item),) = claims[SUBMODS].items()
    return name, item
