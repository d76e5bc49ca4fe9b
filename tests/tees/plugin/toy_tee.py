"""A toy TEE, registered from outside attestcall's source tree, to prove that adding a TEE
is one folder plus one entry point: nothing under src/ names it.

Evidence (176 bytes)::

    0    magic        8   b"TOYQUOTE"
    8    report_data  64  the nonce
    72   measurement  32  SHA-256 of the payload (or --toy-measurement)
    104  debug        1   0 or 1
    105  reserved     7   zero
    112  signature    64  Ed25519 by the toy platform's key over bytes 0..111

The toy platform's key lives in the simulated-platform home (folder ``toy``), made by its
SimState hook; the verifier trusts it only when asked to trust simulated roots, or when
the user gives its public key as the toy's trust anchor (``verify --toy-key FILE``, the
option the toy's record declares; then the quote counts as genuine, not simulated). The keep
runs a real untrusted host process: the shim sends (nonce, measurement, debug) through the
request block and checks the reply's length.
"""

from __future__ import annotations

import errno
import hashlib
import struct
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from attestcall import schema
from attestcall.abi import HostFailure
from attestcall.appraisal import Appraisal
from attestcall.errors import CollateralError, EvidenceError, HostError
from attestcall.simstate import platform_dir, sim_home, write_manifest, write_private_key
from attestcall.tees import Backend, OpenedKeep, Option, PolicyTable, SimState, Tee

TECHNOLOGY = 200
MAGIC = b"TOYQUOTE"
SIGNED = 112
SIZE = SIGNED + 64
OP_SIZE, OP_QUOTE = 1, 2
KEY_FILE = "platform_key.pem"


def _create(folder: Path) -> None:
    write_private_key(folder / KEY_FILE, Ed25519PrivateKey.generate())
    write_manifest(folder, "toy", [KEY_FILE])


def _describe(folder: Path) -> str:
    return f"toy platform: {folder / KEY_FILE}"


def _platform_key() -> Ed25519PrivateKey:
    folder = platform_dir("toy", _create)
    return serialization.load_pem_private_key((folder / KEY_FILE).read_bytes(), None)


# -------------------------------------------------------------------------- the keep


class ToyHost:
    """The untrusted host: signs what the shim asks (the toy 'quoting enclave')."""

    def __init__(self, key: Ed25519PrivateKey):
        self.key = key

    def handle(self, op: int, data: bytes, limit: int) -> bytes:
        if op == OP_SIZE:
            return struct.pack("<I", SIZE)
        if op == OP_QUOTE and len(data) == 97:
            body = MAGIC + data + bytes(7)
            return body + self.key.sign(body)
        raise HostError(f"unsupported op {op}", errno.ENOSYS)


class ToyShim:
    technology = TECHNOLOGY

    def __init__(self, channel, measurement: bytes, debug: bool):
        self.channel = channel
        self.measurement = measurement
        self.debug = debug

    def evidence_size(self) -> int:
        return self.channel.ask_size(OP_SIZE)

    def evidence(self, nonce: bytes) -> bytes:
        quote = self.channel.call(OP_QUOTE, nonce + self.measurement + bytes([self.debug]), SIZE)
        if len(quote) != SIZE or quote[8:72] != nonce:
            raise HostFailure("the toy host answered another request")
        return quote


def open_toy_sim(payload: bytes, options, services) -> OpenedKeep:
    measurement = options.get("measurement") or hashlib.sha256(payload).digest()
    channel = services.start_host(ToyHost(_platform_key()))
    return OpenedKeep(ToyShim(channel, measurement, bool(options.get("debug"))),
                      {"measurement": measurement.hex()})


# ---------------------------------------------------------------------- the verifier


def recognise(evidence: bytes) -> bool:
    return evidence[:8] == MAGIC


def collateral_source(evidence: bytes, value, url) -> Ed25519PublicKey | None:
    """The trust anchor the user gave (``--toy-key``: a PEM public key, as a path or its
    content), or None."""
    if value is None:
        return None
    data = Path(value).read_bytes() if isinstance(value, Path | str) else bytes(value)
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError:
        raise CollateralError("the toy trust anchor is not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise CollateralError("the toy trust anchor is not an Ed25519 key")
    return key


def appraise(evidence: bytes, collateral, at, roots) -> Appraisal:
    if len(evidence) != SIZE or evidence[:8] != MAGIC or any(evidence[105:SIGNED]):
        raise EvidenceError(f"a toy quote is {SIZE} bytes starting with {MAGIC!r}")
    claims = {"measurement": evidence[72:104].hex(), "debug": bool(evidence[104])}
    appraisal = Appraisal("toy", claims, evidence[8:72], debug=bool(evidence[104]))
    if collateral is not None:
        try:
            collateral.verify(evidence[SIGNED:], evidence[:SIGNED])
            return appraisal
        except InvalidSignature:
            appraisal.problems.append("the toy quote is not signed by the given toy key")
            return appraisal
    for root in roots:
        try:
            root.verify(evidence[SIGNED:], evidence[:SIGNED])
        except InvalidSignature:
            continue
        appraisal.simulated = True
        return appraisal
    appraisal.simulated = True
    appraisal.problems.append("the toy quote is not signed by a trusted toy platform key "
                              "(simulated: pass --trust-simulated)")
    return appraisal


def simulated_roots() -> list[Ed25519PublicKey]:
    path = sim_home() / "toy" / KEY_FILE
    if not path.exists():
        return []
    return [serialization.load_pem_private_key(path.read_bytes(), None).public_key()]


def describe(data: bytes) -> dict | None:
    """`attestcall show` of a toy quote: its fields by the toy's own names."""
    if data[:8] != MAGIC:
        return None
    if len(data) != SIZE:
        raise EvidenceError(f"a toy quote is {SIZE} bytes, not {len(data)}")
    return {"kind": "toy-quote", "technology": "toy", "size": SIZE,
            "quote": {"REPORT_DATA": data[8:72].hex(), "TOY_MEASUREMENT": data[72:104].hex(),
                      "DEBUG": bool(data[104]), "SIGNATURE": data[SIGNED:].hex()}}


def check(table, appraisal) -> list[str]:
    return schema.allow_lists(table, appraisal.claims, ("measurement",))


TEE = Tee(
    technology=TECHNOLOGY,
    name="toy",
    title="toy quote",
    media_type="application/vnd.example.toy-quote",
    recognise=recognise,
    appraise=appraise,
    collateral_source=collateral_source,
    collateral_options=("--toy-key", None),
    collateral_help="the toy platform's public key (PEM) to trust",
    simulated_roots=simulated_roots,
    policy=PolicyTable({"allow_debug": schema.boolean, "measurement": schema.hex_list(32)},
                       check),
    debug_word="toy",
    report_data=lambda evidence: evidence[8:72],
    measurement_claim="measurement",
    backends=(Backend("toy-sim", open_toy_sim, simulated=True),),
    keep_options=(Option(("--toy-measurement",), "measurement", "hex:32",
                         "the toy keep's measurement, 64 hex digits"),),
    sim_state=SimState("toy", _create, _describe),
    describe=describe,
)
