"""The simulated RMM's attestation calls (RMM specification DEN0137, "Realm Services
Interface"): RSI_ATTESTATION_TOKEN_INIT and RSI_ATTESTATION_TOKEN_CONTINUE for one REC.

- ``token_init(challenge)``: starts a token for the 64-byte challenge (the realm passes it
  in X1..X8) and answers ``(RSI_SUCCESS, upper bound of the token's size)``; a token in
  progress is abandoned.
- ``token_continue(offset, size)``: the realm offers ``size`` bytes at ``offset`` in one
  4 KiB granule; the RMM answers ``(status, bytes written there)``: RSI_INCOMPLETE while
  more is to come (the first call after INIT signs, and, as TF-RMM's interruptible signing
  may, writes nothing), RSI_SUCCESS with the last piece. RSI_ERROR_INPUT for a buffer
  outside the granule, RSI_ERROR_STATE without a token in progress.

The platform token comes from the platform security processor (HES) when the RMM first
needs it (at its boot, on a real machine): signed with the CPAK, its challenge the hash of
the RAK claim. The Normal-world host plays no part.
"""

from __future__ import annotations

from collections.abc import Callable

from attestcall.arm.sim import token as tok
from attestcall.arm.sim.state import CcaState

GRANULE_SIZE = 4096
# What INIT answers as the token's upper bound: the RMM's token buffer (as TF-RMM reserves
# a fixed one); a simulated token is about 2.1 KiB (2.3 KiB with SHA-512 measurements).
TOKEN_BUFFER_SIZE = 2 * GRANULE_SIZE

RSI_SUCCESS = 0
RSI_ERROR_INPUT = 1
RSI_ERROR_STATE = 2
RSI_INCOMPLETE = 3
RSI_ERROR_UNKNOWN = 4


class SimulatedRmm:
    """One REC's view of the RMM's attestation interface.

    ``granule`` is the granule size (4096; tests use smaller ones to make a token span
    several); ``lifecycle`` overrides the platform's (a debug platform)."""

    def __init__(self, state: CcaState, identity: tok.RealmIdentity, form: int,
                 *, granule: int = GRANULE_SIZE, lifecycle: int | None = None):
        if form not in tok.FORMS:
            raise ValueError(f"the token form is one of {tok.FORMS}")
        self.state = state
        self.identity = identity
        self.form = form
        self.granule = granule
        self.lifecycle = lifecycle
        self.rak = tok.rak_claim(state.rak, form)
        self._platform: bytes | None = None
        self._pending: Callable[[], bytes] | None = None  # INIT done, not yet signed
        self._token = b""
        self._sent = 0

    def platform_token(self) -> bytes:
        """The HES's platform token for this RMM's RAK (asked for once)."""
        if self._platform is None:
            self._platform = tok.platform_token(self.state, self.rak, self.form,
                                                self.lifecycle)
        return self._platform

    def _build(self, challenge: bytes) -> bytes:
        realm = tok.realm_token(self.state.rak, self.rak, self.identity, challenge, self.form)
        return tok.attestation_token(self.platform_token(), realm, self.form)

    def token_init(self, challenge: bytes) -> tuple[int, int]:
        if len(challenge) != tok.fmt.CHALLENGE_SIZE:
            return RSI_ERROR_INPUT, 0
        challenge = bytes(challenge)
        self._pending = lambda: self._build(challenge)
        self._token, self._sent = b"", 0
        return RSI_SUCCESS, TOKEN_BUFFER_SIZE

    def token_continue(self, offset: int, size: int) -> tuple[int, bytes]:
        if offset < 0 or size <= 0 or offset + size > self.granule:
            return RSI_ERROR_INPUT, b""
        if self._pending is not None:  # the signing step: nothing written yet
            self._token, self._pending = self._pending(), None
            return RSI_INCOMPLETE, b""
        if not self._token:
            return RSI_ERROR_STATE, b""
        piece = self._token[self._sent:self._sent + size]
        self._sent += len(piece)
        if self._sent < len(self._token):
            return RSI_INCOMPLETE, piece
        self._token, self._sent = b"", 0
        return RSI_SUCCESS, piece
