"""The simulated SEV platform on disk, under ``sim_home()/sev/``.

::

    sev/                       created whole by create_state (simstate.platform_dir)
      state.json               the manifest (platform "sev")
      platform.json            firmware API version and build; a SIMULATED comment
      ark.key.pem ask.key.pem  RSA-4096, PKCS#8, mode 0600 (AMD's roots, simulated)
      cek.key.pem oca.key.pem pek.key.pem pdh.key.pem   P-384, PKCS#8, mode 0600
      ark.cert ask.cert        AMD-format certificates (see sev_cert)
      cek.cert oca.cert pek.cert pdh.cert   SEV-format certificates

AMD-format certificates have no subject: the simulated ARK's and ASK's 16-byte key ids
start with the ASCII bytes ``SIMULATED`` (then 7 random bytes), so a simulated root is
recognisable; a tenant trusts it only when given it explicitly (:func:`simulated_ark`).
The PEK is signed by the CEK and by the OCA (the platform is "self-owned": the firmware's
own OCA), the PDH by the PEK, the CEK by the ASK.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec, rsa

from attestcall import simstate
from attestcall.amd.formats import sev_cert as sc

PLATFORM = "sev"
PLATFORM_JSON = "platform.json"
API_MAJOR, API_MINOR, BUILD = 0, 24, 15
SIMULATED_ID_PREFIX = b"SIMULATED"
_KEYS = ("ark", "ask", "cek", "oca", "pek", "pdh")
_FILES = (PLATFORM_JSON, *(f"{n}.key.pem" for n in _KEYS), *(f"{n}.cert" for n in _KEYS))


@dataclass(frozen=True)
class SevState:
    """The loaded simulated SEV platform: its exported chain and the PDH private key."""

    folder: Path
    chain: sc.PlatformChain
    pdh_key: ec.EllipticCurvePrivateKey
    api_major: int
    api_minor: int
    build: int


def _key_id() -> bytes:
    return SIMULATED_ID_PREFIX + os.urandom(sc.AMD_ID_SIZE - len(SIMULATED_ID_PREFIX))


def create_state(folder: Path) -> None:
    """Write a fresh simulated SEV platform into the (private, empty) ``folder``."""
    ark_key = rsa.generate_private_key(public_exponent=65537, key_size=4096)
    ask_key = rsa.generate_private_key(public_exponent=65537, key_size=4096)
    ec_keys = {n: ec.generate_private_key(ec.SECP384R1()) for n in ("cek", "oca", "pek", "pdh")}
    ark_id, ask_id = _key_id(), _key_id()
    ark = sc.sign_amd(sc.new_amd_certificate(sc.USAGE_ARK, ark_id, ark_id,
                                             ark_key.public_key()), ark_key)
    ask = sc.sign_amd(sc.new_amd_certificate(sc.USAGE_ASK, ask_id, ark_id,
                                             ask_key.public_key()), ark_key)

    def cert(name: str, usage: int, algo: int) -> sc.SevCertificate:
        return sc.new_certificate(usage, algo, ec_keys[name].public_key(), API_MAJOR, API_MINOR)

    cek = sc.sign(cert("cek", sc.USAGE_CEK, sc.ALGO_ECDSA_SHA256), sc.USAGE_ASK, ask_key)
    oca = sc.sign(cert("oca", sc.USAGE_OCA, sc.ALGO_ECDSA_SHA256), sc.USAGE_OCA,
                  ec_keys["oca"])
    pek = sc.sign(sc.sign(cert("pek", sc.USAGE_PEK, sc.ALGO_ECDSA_SHA256), sc.USAGE_CEK,
                          ec_keys["cek"]), sc.USAGE_OCA, ec_keys["oca"])
    pdh = sc.sign(cert("pdh", sc.USAGE_PDH, sc.ALGO_ECDH_SHA256), sc.USAGE_PEK,
                  ec_keys["pek"])
    keys = {"ark": ark_key, "ask": ask_key, **ec_keys}
    for name, key in keys.items():
        simstate.write_private_key(folder / f"{name}.key.pem", key)
    for name, c in (("ark", ark), ("ask", ask), ("cek", cek), ("oca", oca), ("pek", pek),
                    ("pdh", pdh)):
        simstate.write_public(folder / f"{name}.cert", c.pack())
    info = {
        "comment": "SIMULATED AMD SEV platform (attestcall); not a real machine",
        "created": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        "api_major": API_MAJOR, "api_minor": API_MINOR, "build": BUILD,
    }
    simstate.write_public(folder / PLATFORM_JSON, json.dumps(info, indent=2).encode() + b"\n")
    simstate.write_manifest(folder, PLATFORM, _FILES)


def read_state(folder: Path) -> SevState:
    files = simstate.check_manifest(folder, PLATFORM, _FILES)
    for name in _KEYS:
        simstate.check_private(folder, f"{name}.key.pem")
    try:
        info = json.loads(files[PLATFORM_JSON])
        api = (int(info["api_major"]), int(info["api_minor"]), int(info["build"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise simstate.corrupt(folder, f"{PLATFORM_JSON} is not valid") from exc
    try:
        chain = sc.PlatformChain(
            *(sc.SevCertificate.parse(files[f"{n}.cert"]) for n in ("pdh", "pek", "oca", "cek")),
            sc.AmdCertificate.parse(files["ask.cert"]), sc.AmdCertificate.parse(files["ark.cert"]))
        chain.verify([chain.ark.pack()])
    except sc.SevCertError as exc:
        raise simstate.corrupt(folder, f"the certificate chain is invalid: {exc}") from exc
    pdh_key = simstate.load_private_key(folder, "pdh.key.pem", files["pdh.key.pem"])
    if not isinstance(pdh_key, ec.EllipticCurvePrivateKey) or \
            pdh_key.public_key().public_numbers() != chain.pdh.public_key().public_numbers():
        raise simstate.corrupt(folder, "pdh.key.pem does not match pdh.cert")
    return SevState(folder, chain, pdh_key, *api)


def load_state(home: Path | str | None = None) -> SevState:
    """The SEV state under ``home`` (default ``sim_home()``), created on first use (two
    RSA-4096 keys: about a second) and loaded once per process while its manifest is
    unchanged (``simstate.load_state``)."""
    return simstate.load_state(PLATFORM, create_state, read_state, home)


def simulated_ark(home: Path | str | None = None) -> bytes:
    """The simulated ARK (AMD format), for a tenant that explicitly trusts the simulator."""
    return load_state(home).chain.ark.pack()


def describe_state(folder: Path) -> str:
    state = read_state(folder)
    chain = state.chain
    lines = [f"AMD SEV (simulated): {folder}",
             f"  firmware API {state.api_major}.{state.api_minor} build {state.build}",
             f"  ARK key id {chain.ark.key_id.hex()} (RSA-{len(chain.ark.modulus) * 8}), "
             f"ASK key id {chain.ask.key_id.hex()}",
             "  CEK, OCA, PEK, PDH: P-384 (PDH for ECDH, the rest ECDSA)"]
    return "\n".join(lines)
