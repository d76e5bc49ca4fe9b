"""``POST /v1/attestation``'s request, read strictly (sans-I/O).

The body is a JSON object::

    {"evidence":   "<base64url>",          what get_attestation wrote (required)
     "technology": "sgx" | 2,              its technology, by name or id (else detected)
     "challenge":  "<base64url>",          a /v1/challenge challenge, or
     "nonce":      "<base64url>"}          the caller's own 64-byte nonce

**The binding.** With a ``challenge`` (single use, consumed by the service) the evidence's
64-byte report data must be SHA-512(challenge): one hash of exactly what the service handed
out, so that nothing else a keep might put in its report data (a key's hash, a padded
value) can be passed off as it. With a ``nonce`` the report data must equal the nonce, as
``attestcall verify --nonce`` checks. Not both: each binds the same 64 bytes. With neither
the token says nothing about freshness (no ``eat_nonce``), and the relying party binds the
evidence itself.

Evidence of a pre-attestation technology (SEV, technology 1) is a keep's private key, not
evidence: it is refused as soon as it is seen (by the technology named, or by its shape, a
DER PKCS#8 key, whatever technology is named), and the refusal quotes none of it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from attestcall.abi import NONCE_SIZE, Technology
from attestcall.errors import AttestcallError
from attestcall.tees import Tee, registry

MEMBERS = ("evidence", "technology", "challenge", "nonce")
CHALLENGE_SIZE = 32


class AttestationRequestError(AttestcallError):
    """A request that cannot be read (400). Its message never quotes the evidence."""


class PreAttestationEvidence(AttestationRequestError):
    """Evidence that is an SEV keep's delivered private key."""


@dataclass(frozen=True)
class AttestationRequest:
    evidence: bytes
    tee: Tee | None  # None: detect from the evidence
    challenge: bytes | None
    nonce: bytes | None

    @property
    def binding(self) -> bytes | None:
        """The 64 bytes the evidence's report data must equal, if any."""
        if self.challenge is not None:
            return challenge_binding(self.challenge)
        return self.nonce

    @property
    def echoed(self) -> bytes | None:
        """What the token's ``eat_nonce`` echoes: the challenge, or the nonce."""
        return self.challenge if self.challenge is not None else self.nonce


def challenge_binding(challenge: bytes) -> bytes:
    """The report data evidence bound to ``challenge`` carries: SHA-512(challenge)."""
    return hashlib.sha512(challenge).digest()


_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")  # RFC 4648 section 5, without the padding


def _b64url(value: Any, what: str) -> bytes:
    if not isinstance(value, str) or not value:
        raise AttestationRequestError(f"{what} must be a non-empty base64url string")
    text = value.rstrip("=")
    if len(value) - len(text) > 2 or len(text) % 4 == 1 or not _BASE64URL.fullmatch(text):
        raise AttestationRequestError(f"{what} is not base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise AttestationRequestError(f"{what} is not base64url") from None


def _technology(value: Any) -> Tee:
    tee = None
    if isinstance(value, bool):
        pass
    elif isinstance(value, int):
        tee = registry().by_id(value) if 0 <= value <= 0xFFFF_FFFF else None
    elif isinstance(value, str):
        tee = registry().by_name(value)
    if tee is not None and (tee.technology == Technology.SEV or tee.pre_attestation):
        raise PreAttestationEvidence(
            f"technology {tee.technology} is pre-attestation: what get_attestation returns "
            "there is the keep's delivered private key, which is never sent to the "
            "attestation service")
    if tee is None or not tee.verifiable:
        known = ", ".join(f"{t.name} ({t.technology})" for t in registry().verifiable())
        shown = (f"technology {tee.technology} ({tee.name}) cannot be verified" if tee
                 else f"unknown technology {str(value)[:40]!r}")
        raise AttestationRequestError(f"{shown}: this service verifies {known}")
    return tee


def looks_like_private_key(data: bytes) -> bool:
    """Whether ``data`` is a DER PKCS#8 private key (what an SEV keep's buffer holds)."""
    if not data.startswith(b"\x30"):
        return False
    try:
        serialization.load_der_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return False
    return True


def read_request(body: bytes) -> AttestationRequest:
    """The request in ``body``; AttestationRequestError (400) when it cannot be read."""
    try:
        document = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise AttestationRequestError("the request body is not a JSON object") from None
    if not isinstance(document, dict):
        raise AttestationRequestError("the request body is not a JSON object")
    unknown = sorted(set(document) - set(MEMBERS))
    if unknown:
        raise AttestationRequestError(
            f"unknown members {', '.join(repr(u[:40]) for u in unknown[:5])}; the request "
            f"has {', '.join(MEMBERS)}")
    if "evidence" not in document:
        raise AttestationRequestError("the request has no evidence")
    tee = _technology(document["technology"]) if "technology" in document else None
    evidence = _b64url(document["evidence"], "the evidence")
    if looks_like_private_key(evidence):
        raise PreAttestationEvidence(
            "the evidence is a private key (what an SEV keep's get_attestation returns), "
            "which is never sent to the attestation service")
    if "challenge" in document and "nonce" in document:
        raise AttestationRequestError("give a challenge or a nonce, not both: each binds the "
                                      "evidence's report data")
    challenge = nonce = None
    if "challenge" in document:
        challenge = _b64url(document["challenge"], "the challenge")
        if len(challenge) != CHALLENGE_SIZE:
            raise AttestationRequestError(f"a challenge is {CHALLENGE_SIZE} bytes, not "
                                          f"{len(challenge)} (get one from /v1/challenge)")
    if "nonce" in document:
        nonce = _b64url(document["nonce"], "the nonce")
        if len(nonce) != NONCE_SIZE:
            raise AttestationRequestError(f"the nonce must be {NONCE_SIZE} bytes, not "
                                          f"{len(nonce)}")
    return AttestationRequest(evidence, tee, challenge, nonce)
