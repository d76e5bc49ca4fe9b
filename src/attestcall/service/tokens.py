"""The service's EAR tokens: a JWT (JWS compact, ES384) over the EAR claims-set, and the
JWKS that publishes the key.

The key is the service's *signing key*, not the CA's::

    home/
      ear-signing.key.pem   P-384, PKCS#8 PEM, mode 0600, created on first start

A key of its own, because the two keys vouch for different things with different reach.
The CA key makes TLS identities: whoever holds it can mint a certificate any tenant's
``deploy --ca`` accepts, so it should sign as little as possible and rotate as rarely as
tenants can bear (every keep certificate and every tenant's trust anchor hangs on it). The
token key only vouches for attestation results, is published as a JWK that relying parties
fetch by ``kid``, and can be rotated by publishing a new key in the JWKS, without
re-issuing anything. One key, one purpose (NIST SP 800-57): a signature made for one
protocol can never be offered to the other's verifier, and a leak of one does not give the
other. Replicas sharing the home share the key, created once as the CA's files are.

Signed with ``cryptography`` directly: a compact JWS with one fixed algorithm is a few lines
(RFC 7515 section 7.1, RFC 7518 section 3.4: the raw 96-byte R || S, not DER), where a JOSE
library would add a dependency and its whole algorithm surface to the service. The tests
verify tokens with an independent JOSE library (joserfc), from the JWKS alone.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from attestcall import ear
from attestcall.service.ca import CaError, publish, read_private_key
from attestcall.simstate import write_private_key

KEY_FILE = "ear-signing.key.pem"
ALGORITHM = "ES384"
COORDINATE = 48  # bytes of a P-384 coordinate, and of R and S
TYPE = "JWT"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _canonical(value: Mapping[str, Any]) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode("utf-8")


class TokenSigner:
    """The service's ES384 signing key: signs EAR claims-sets, publishes its JWK."""

    def __init__(self, key: ec.EllipticCurvePrivateKey):
        if not isinstance(key.curve, ec.SECP384R1):
            raise CaError(f"the EAR signing key must be P-384 (ES384), not {key.curve.name}")
        self.key = key
        numbers = key.public_key().public_numbers()
        coordinates = {"crv": "P-384", "kty": "EC",
                       "x": b64url(numbers.x.to_bytes(COORDINATE, "big")),
                       "y": b64url(numbers.y.to_bytes(COORDINATE, "big"))}
        # RFC 7638: the SHA-256 of the required members, sorted, without white space
        self.kid = b64url(hashlib.sha256(_canonical(coordinates)).digest())
        self.jwk = {**coordinates, "kid": self.kid, "alg": ALGORITHM, "use": "sig"}
        self._header = b64url(_canonical({"alg": ALGORITHM, "kid": self.kid, "typ": TYPE}))

    @classmethod
    def load_or_create(cls, home: Path | str) -> TokenSigner:
        """The signing key in the service ``home`` (mode 0700), made on first use."""
        home = Path(home)
        path = home / KEY_FILE
        if not path.exists():
            try:
                home.mkdir(mode=0o700, parents=True, exist_ok=True)
            except OSError as exc:
                raise CaError(f"cannot create the service home {home}: "
                              f"{exc.strerror or exc}") from None
            key = ec.generate_private_key(ec.SECP384R1())
            publish(home, KEY_FILE, lambda target: write_private_key(target, key))
        key = read_private_key(path, "the EAR signing key")
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise CaError(f"the EAR signing key {path} is not an EC key")
        return cls(key)

    def jwks(self) -> dict[str, Any]:
        """The JSON Web Key Set that verifies this service's tokens."""
        return {"keys": [dict(self.jwk)]}

    def sign(self, claims: Mapping[str, Any]) -> str:
        """The EAR claims-set as a signed JWT (compact serialisation)."""
        signing_input = f"{self._header}.{b64url(ear.encode(claims))}"
        r, s = decode_dss_signature(self.key.sign(signing_input.encode("ascii"),
                                                  ec.ECDSA(hashes.SHA384())))
        signature = r.to_bytes(COORDINATE, "big") + s.to_bytes(COORDINATE, "big")
        return f"{signing_input}.{b64url(signature)}"
