"""CCA in the keep: the realm's side of the RSI attestation calls (the shim) and the RMM
behind the request block (the keep's second process).

On a CCA machine the realm asks the RMM, trusted firmware at R-EL2, for its token with
RSI_ATTESTATION_TOKEN_INIT (the 64-byte challenge) and RSI_ATTESTATION_TOKEN_CONTINUE
(the token copied out a granule at a time); the RMM holds the platform token the platform
security processor (HES) signed for its RAK. The untrusted Normal-world host is not in
that path. So in the cca-sim keep the process behind the request block stands for the RMM
(with the HES behind it), not for a host, and each request op is one RSI call:

- ``Op.RSI_TOKEN_INIT``: the challenge -> ``<QQ`` (status, upper bound of the size);
- ``Op.RSI_TOKEN_CONTINUE``: ``<QQ`` (offset in the granule, size offered) ->
  ``<QQ`` (status, length) and that many bytes.

The shim runs Linux's arm-cca-guest loop (a granule filled piece by piece while the RMM
answers RSI_INCOMPLETE, then the next one; Linux 6.13 stops with ENXIO when a token fills
its first granule without RSI_SUCCESS, the shim goes on, as the RMM specification allows a
token of several granules) and checks every answer as if it came from a faulty RMM: the
reply's framing and length, the status, a piece no larger than offered, the token within
the upper bound INIT gave, a bounded number of calls that write nothing, the size the size
query announced, and the realm challenge claim (key 10, the nonce as a 64-byte CBOR byte
string) inside the token. Any failure is a HostFailure (-EIO for the payload). A whole
token is one exchange under a lock: INIT and its CONTINUEs are never interleaved.

configfs-tsm's arm_cca_guest provider has no size query either; the shim learns the size
as configfs-tsm users do, from a real token with a zero challenge, once: a realm's tokens
all have one size (see :mod:`attestcall.arm.sim.token`).
"""

from __future__ import annotations

import errno
import struct
import threading
from collections.abc import Mapping
from enum import IntEnum
from typing import Any

from attestcall.abi import NONCE_SIZE, HostFailure
from attestcall.arm.sim import rmm as rsi
from attestcall.arm.sim import token as tok
from attestcall.arm.sim.state import load_state
from attestcall.errors import HostError, UsageError
from attestcall.tees import Channel, KeepServices, OpenedKeep, refuse_unknown_options

TECHNOLOGY = 5
# CONTINUE answers that write nothing, per token: a real RMM signs in interruptible steps,
# answering RSI_INCOMPLETE with nothing written until the signature is done
MAX_IDLE_CALLS = 1024
MAX_TOKEN = 1 << 16  # the largest upper bound the shim allocates for
_REPLY = struct.Struct("<QQ")
CHALLENGE_CLAIM = b"\x0a\x58\x40"  # claim key 10, then a 64-byte byte string's head


class Op(IntEnum):
    """The request-block ops of the CCA keep: the RSI attestation calls."""

    RSI_TOKEN_INIT = 48  # challenge (64 bytes) -> status, upper bound
    RSI_TOKEN_CONTINUE = 49  # offset, size -> status, length, bytes


class CcaShim:
    """The realm: its token from the RMM through the RSI calls (module documentation)."""

    technology = TECHNOLOGY

    def __init__(self, channel: Channel, granule: int = rsi.GRANULE_SIZE):
        self.channel = channel
        self.granule = granule
        self._size: int | None = None
        self._lock = threading.Lock()

    def evidence_size(self) -> int:
        with self._lock:
            if self._size is None:
                self._size = len(self._token(bytes(NONCE_SIZE)))
            return self._size

    def evidence(self, nonce: bytes) -> bytes:
        with self._lock:
            token = self._token(bytes(nonce))
            announced, self._size = self._size, len(token)
            if announced is not None and len(token) != announced:
                # the call fails; the next size query answers the new size
                raise HostFailure(f"a token of {len(token)} bytes, {announced} were announced")
            return token

    def _token(self, challenge: bytes) -> bytes:
        bound = self._init(challenge)
        token = bytearray()
        idle = 0
        while True:
            piece = bytearray()
            while True:  # one granule, filled piece by piece
                status, written = self._continue(len(piece))
                piece += written
                if not written:
                    idle += 1
                    if idle > MAX_IDLE_CALLS:
                        raise HostFailure(f"the RMM wrote nothing in {idle} calls")
                if status != rsi.RSI_INCOMPLETE or len(piece) >= self.granule:
                    break
            if status not in (rsi.RSI_SUCCESS, rsi.RSI_INCOMPLETE):
                raise HostFailure(f"RSI_ATTESTATION_TOKEN_CONTINUE failed, status {status}")
            if len(token) + len(piece) > bound:
                raise HostFailure(f"the token outgrew the {bound} bytes INIT announced")
            token += piece
            if status == rsi.RSI_SUCCESS:
                break
        if CHALLENGE_CLAIM + challenge not in token:
            raise HostFailure("the token does not carry this realm's challenge")
        return bytes(token)

    def _init(self, challenge: bytes) -> int:
        reply = self.channel.call(Op.RSI_TOKEN_INIT, challenge, _REPLY.size)
        if len(reply) != _REPLY.size:
            raise HostFailure(f"RSI_ATTESTATION_TOKEN_INIT answered {len(reply)} bytes")
        status, bound = _REPLY.unpack(reply)
        if status != rsi.RSI_SUCCESS:
            raise HostFailure(f"RSI_ATTESTATION_TOKEN_INIT failed, status {status}")
        if not 0 < bound <= MAX_TOKEN:
            raise HostFailure(f"RSI_ATTESTATION_TOKEN_INIT announced {bound} bytes")
        return bound

    def _continue(self, offset: int) -> tuple[int, bytes]:
        size = self.granule - offset
        reply = self.channel.call(Op.RSI_TOKEN_CONTINUE, _REPLY.pack(offset, size),
                                  _REPLY.size + size)
        if len(reply) < _REPLY.size:
            raise HostFailure(f"RSI_ATTESTATION_TOKEN_CONTINUE answered {len(reply)} bytes")
        status, length = _REPLY.unpack_from(reply)
        if length > size or len(reply) != _REPLY.size + length:
            raise HostFailure(f"RSI_ATTESTATION_TOKEN_CONTINUE wrote {length} bytes "
                              f"({len(reply) - _REPLY.size} sent) of {size} offered")
        return status, reply[_REPLY.size:]


class RmmHost:
    """The RMM behind the request block: the RSI attestation calls of one REC."""

    def __init__(self, rmm: rsi.SimulatedRmm):
        self.rmm = rmm

    def handle(self, op: int, data: bytes, limit: int) -> bytes:
        if op == Op.RSI_TOKEN_INIT:
            status, bound = self.rmm.token_init(data)
            return _REPLY.pack(status, bound)
        if op == Op.RSI_TOKEN_CONTINUE and len(data) == _REPLY.size:
            offset, size = _REPLY.unpack(data)
            status, written = self.rmm.token_continue(offset, min(size, limit - _REPLY.size))
            return _REPLY.pack(status, len(written)) + written
        raise HostError(f"unsupported op {op}", errno.ENOSYS)


# ------------------------------------------------------------------------------ options


_KNOWN = {"token_format", "hash_algo", "rem0", "rem1", "rem2", "rem3",
          "personalization_value", "debug", "timeout"}


def _hex(options: Mapping[str, Any], key: str, sizes: tuple[int, ...]) -> bytes | None:
    value = options.get(key)
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = bytes.fromhex(value)
        except ValueError:
            raise UsageError(f"cca-sim {key}: not hexadecimal") from None
    if not isinstance(value, bytes | bytearray) or len(value) not in sizes:
        wanted = " or ".join(f"{size} bytes ({2 * size} hex digits)" for size in sizes)
        raise UsageError(f"cca-sim {key} must be {wanted}")
    return bytes(value)


def realm_identity(payload: bytes, options: Mapping[str, Any]) -> tok.RealmIdentity:
    """The realm's identity for ``payload`` with the options' overrides."""
    hash_algo = options.get("hash_algo") or tok.DEFAULT_HASH_ALGO
    if hash_algo not in tok.HASH_ALGOS:
        raise UsageError(f"cca-sim hash_algo must be one of {', '.join(tok.HASH_ALGOS)}, "
                         f"not {hash_algo!r}")
    size = tok.HASH_ALGOS[hash_algo]().digest_size
    rems = []
    for index in range(4):
        rem = _hex(options, f"rem{index}", (32, 64))
        if rem is not None and len(rem) != size:
            raise UsageError(f"cca-sim rem{index}: a {hash_algo} realm's REMs are {size} "
                             f"bytes, not {len(rem)}")
        rems.append(rem)
    return tok.RealmIdentity.for_payload(
        payload, hash_algo, rems,
        _hex(options, "personalization_value", (tok.PERSONALIZATION_SIZE,)))


def token_form(options: Mapping[str, Any]) -> int:
    form = options.get("token_format")
    form = tok.fmt.TAG_CMW if form is None else form
    if isinstance(form, str) and form.isdigit():
        form = int(form)
    if form not in tok.FORMS or isinstance(form, bool):
        raise UsageError(f"cca-sim token_format must be 907 or 399, not {form!r}")
    return form


def open_cca_sim(payload: bytes, options: Mapping[str, Any],
                 services: KeepServices) -> OpenedKeep:
    """A keep on the simulated CCA machine, its realm measured from ``payload``.

    Options (absent or None for the default):

    - ``token_format``: 907 (the CMW collection, default) or 399 (the legacy form);
    - ``hash_algo``: the realm's hash algorithm, ``"sha-256"`` (default) or ``"sha-512"``;
    - ``rem0`` .. ``rem3``: the REMs, bytes or hex of the hash's size (default zero);
    - ``personalization_value``: 64 bytes or 128 hex digits (default zero);
    - ``debug``: the platform booted in a debug lifecycle state
      (recoverable-cca-platform-debug) instead of secured;
    - ``timeout``: seconds the shim waits for the RMM (default 10).

    Raises UsageError for a bad or foreign option."""
    refuse_unknown_options(options, _KNOWN, "cca-sim")
    form = token_form(options)
    identity = realm_identity(payload, options)
    debug = bool(options.get("debug"))
    state = load_state()
    machine = rsi.SimulatedRmm(state, identity, form,
                               lifecycle=tok.LIFECYCLE_DEBUG if debug else None)
    channel = services.start_host(RmmHost(machine))
    details = {"token_format": form, "hash_algo": identity.hash_algo,
               "rim": identity.rim.hex(), "debug": debug}
    return OpenedKeep(CcaShim(channel), details)
