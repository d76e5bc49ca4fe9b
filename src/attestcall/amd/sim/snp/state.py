"""The simulated AMD platform on disk, under ``sim_home()/snp/``.

::

    snp/                    created whole by create_state (fast: no RSA key)
      state.json            the manifest (platform "snp")
      platform.json         what the simulation is, when it was made
      master.secret         32 bytes, mode 0600: every chip secret, chip id and VLEK derives
                            from it (see keys.py)
      milan/ genoa/ turin/  one product's AMD chain, made on first use of that product:
        state.json          its manifest (platform "snp-milan", ...)
        ark.key.pem ask.key.pem asvk.key.pem   RSA-4096, PKCS#8, mode 0600
        ark.pem ask.pem asvk.pem
      ark_milan.pem ...     a copy of each product's ARK, where ``--trust-simulated`` looks
      crl_milan.pem ...     that ARK's CRL, revoking nothing (used with --trust-simulated)

RSA-4096 keys take about half a second each to generate, so a product's three are made
once, lazily, never in a request path. A product folder is created atomically (simstate's
platform_dir); the ARK copy next to it is written to a temporary name and renamed.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from attestcall import simstate
from attestcall.amd.sim.snp import certs, keys
from attestcall.amd.sim.snp.products import PRODUCTS, Product, Tcb
from attestcall.errors import SimStateError

PLATFORM = "snp"
MASTER_SECRET = "master.secret"
PLATFORM_JSON = "platform.json"
_FILES = (MASTER_SECRET, PLATFORM_JSON)
ARK_KEY, ASK_KEY, ASVK_KEY = "ark.key.pem", "ask.key.pem", "asvk.key.pem"
ARK_CERT, ASK_CERT, ASVK_CERT = "ark.pem", "ask.pem", "asvk.pem"
_CHAIN_FILES = (ARK_KEY, ASK_KEY, ASVK_KEY, ARK_CERT, ASK_CERT, ASVK_CERT)
DEFAULT_CSP_ID = "attestcall-simulated-csp"


def ark_copy_name(product: Product) -> str:
    return f"ark_{product.key}.pem"


def crl_copy_name(product: Product) -> str:
    return f"crl_{product.key}.pem"


# ------------------------------------------------------------------------- a product's chain


@dataclass(eq=False)
class ProductChain:
    """One product's simulated AMD chain. CA private keys are loaded on first use (checking
    an RSA-4096 key is slow); issued VCEK/VLEK certificates are kept per TCB."""

    product: Product
    folder: Path
    ark: x509.Certificate
    ask: x509.Certificate
    asvk: x509.Certificate
    _pems: dict[str, bytes]
    _keys: dict[str, rsa.RSAPrivateKey] = field(default_factory=dict)
    _issued: dict[tuple[object, ...], x509.Certificate] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _key(self, name: str, cert: x509.Certificate) -> rsa.RSAPrivateKey:
        key = self._keys.get(name)
        if key is None:
            loaded = simstate.load_private_key(self.folder, name, self._pems[name])
            if not isinstance(loaded, rsa.RSAPrivateKey) or loaded.public_key() != \
                    cert.public_key():
                raise simstate.corrupt(self.folder, f"{name} does not match its certificate")
            key = self._keys[name] = loaded
        return key

    def crl(self, revoked: Sequence[x509.Certificate] = (), *,
            this_update: dt.datetime | None = None,
            next_update: dt.datetime | None = None) -> x509.CertificateRevocationList:
        """A CRL of this product's ARK revoking ``revoked`` (ASK/ASVK directly, VCEK/VLEK
        as indirect entries), valid from ``this_update`` to ``next_update`` (default: the
        ARK's validity)."""
        with self._lock:
            ark_key = self._key(ARK_KEY, self.ark)
        return certs.issue_crl(self.ark, ark_key, revoked, this_update=this_update,
                               next_update=next_update)

    def vcek_certificate(self, tcb: Tcb, key: ec.EllipticCurvePublicKey,
                         hwid: bytes) -> x509.Certificate:
        """The ASK-signed VCEK certificate for ``key`` at ``tcb`` (issued once per process)."""
        index = ("VCEK", tcb, hwid, key.public_numbers())
        with self._lock:
            if index not in self._issued:
                self._issued[index] = certs.issue_vek(
                    self.product, tcb, key, self.ask, self._key(ASK_KEY, self.ask), hwid=hwid)
            return self._issued[index]

    def vlek_certificate(self, tcb: Tcb, key: ec.EllipticCurvePublicKey,
                         csp_id: str) -> x509.Certificate:
        """The ASVK-signed VLEK certificate for ``key`` at ``tcb``."""
        index = ("VLEK", tcb, csp_id, key.public_numbers())
        with self._lock:
            if index not in self._issued:
                self._issued[index] = certs.issue_vek(
                    self.product, tcb, key, self.asvk, self._key(ASVK_KEY, self.asvk),
                    csp_id=csp_id)
            return self._issued[index]


def _create_chain(product: Product) -> Callable[[Path], None]:
    def create(folder: Path) -> None:
        start = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=1)

        def rsa4096() -> rsa.RSAPrivateKey:
            return rsa.generate_private_key(public_exponent=65537, key_size=certs.RSA_BITS)

        ark_key, ask_key, asvk_key = rsa4096(), rsa4096(), rsa4096()
        ark = certs.issue_ark(product, ark_key, start)
        ask = certs.issue_signing_ca(product, ask_key, ark, ark_key)
        asvk = certs.issue_signing_ca(product, asvk_key, ark, ark_key, vlek=True)
        for file_name, key in ((ARK_KEY, ark_key), (ASK_KEY, ask_key), (ASVK_KEY, asvk_key)):
            simstate.write_private_key(folder / file_name, key)
        for file_name, cert in ((ARK_CERT, ark), (ASK_CERT, ask), (ASVK_CERT, asvk)):
            simstate.write_public(folder / file_name, certs.pem(cert))
        simstate.write_manifest(folder, f"{PLATFORM}-{product.key}", _CHAIN_FILES)

    return create


def _read_chain(product: Product, folder: Path) -> ProductChain:
    files = simstate.check_manifest(folder, f"{PLATFORM}-{product.key}", _CHAIN_FILES)
    for name in (ARK_KEY, ASK_KEY, ASVK_KEY):
        simstate.check_private(folder, name)
    try:
        ark, ask, asvk = (x509.load_pem_x509_certificate(files[name])
                          for name in (ARK_CERT, ASK_CERT, ASVK_CERT))
    except ValueError as exc:
        raise simstate.corrupt(folder, f"a certificate does not parse: {exc}") from exc
    for cert in (ask, asvk):
        if cert.issuer != ark.subject:
            raise simstate.corrupt(folder, "the ASK or ASVK is not issued by the ARK")
    pems = {name: files[name] for name in (ARK_KEY, ASK_KEY, ASVK_KEY)}
    return ProductChain(product, folder, ark, ask, asvk, pems)


def _publish_ark(root: Path, chain: ProductChain) -> None:
    """Keep ``snp/ark_<product>.pem`` equal to the chain's ARK, and ``snp/crl_<product>.pem``
    a CRL of that ARK revoking nothing (what the simulated KDS would serve; a verifier
    trusting the simulators uses it), each by atomic replace."""
    _publish(root / ark_copy_name(chain.product), certs.pem(chain.ark))
    target = root / crl_copy_name(chain.product)
    try:
        published = x509.load_pem_x509_crl(target.read_bytes())
        if published.issuer == chain.ark.subject and published.is_signature_valid(
                chain.ark.public_key()):  # type: ignore[arg-type]
            return
    except (OSError, ValueError):
        pass
    _publish(target, chain.crl().public_bytes(serialization.Encoding.PEM))


def _publish(target: Path, data: bytes) -> None:
    root = target.parent
    try:
        if target.read_bytes() == data:
            return
    except OSError:
        pass
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=root)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except OSError as exc:
        raise SimStateError(f"cannot write {target}: {exc.strerror}") from exc
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


_READ_CRLS: dict[Path, tuple[tuple[int, int], x509.CertificateRevocationList]] = {}


def published_crls(home: Path | str | None = None) -> list[x509.CertificateRevocationList]:
    """The published CRL of every product whose ARK is published under ``home`` (default
    ``sim_home()``); never creates a home, but publishes a missing CRL of an existing
    chain. Each file is parsed again only when it changes."""
    folder = (Path(home) if home is not None else simstate.sim_home()) / PLATFORM
    found = []
    for product in PRODUCTS.values():
        if not (folder / ark_copy_name(product)).exists():
            continue
        path = folder / crl_copy_name(product)
        if not path.exists():
            load_state(home).chain(product)
        try:
            info = path.stat()
            stamp = (info.st_mtime_ns, info.st_size)
            kept = _READ_CRLS.get(path)
            if kept is None or kept[0] != stamp:
                kept = (stamp, x509.load_pem_x509_crl(path.read_bytes()))
                _READ_CRLS[path] = kept
        except (OSError, ValueError):
            continue
        found.append(kept[1])
    return found


# ------------------------------------------------------------------------- the platform


@dataclass(eq=False)
class SnpState:
    """The loaded simulated AMD platform. Compared by identity; cached by load_state."""

    folder: Path
    master: bytes
    info: dict[str, object]
    _chains: dict[str, ProductChain] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def chain(self, product: Product) -> ProductChain:
        """``product``'s ARK/ASK/ASVK, generated on first use (slow: three RSA-4096 keys)."""
        with self._lock:
            found = self._chains.get(product.key)
            if found is None:
                folder = simstate.platform_dir(product.key, _create_chain(product), self.folder)
                found = _read_chain(product, folder)
                _publish_ark(self.folder, found)
                self._chains[product.key] = found
            return found

    def chip_secret(self, product: Product) -> bytes:
        return keys.chip_secret(self.master, product)

    def chip_id(self, product: Product) -> bytes:
        return keys.chip_id(self.master, product)


def create_state(folder: Path) -> None:
    """Write a fresh simulated AMD platform into the (private, empty) ``folder``."""
    info = {
        "comment": "SIMULATED AMD SEV-SNP platform (attestcall); not a real machine",
        "created": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        "products": sorted(PRODUCTS),
    }
    simstate.write_private(folder / MASTER_SECRET, os.urandom(32))
    simstate.write_public(folder / PLATFORM_JSON, json.dumps(info, indent=2).encode() + b"\n")
    simstate.write_manifest(folder, PLATFORM, _FILES)


def read_state(folder: Path) -> SnpState:
    files = simstate.check_manifest(folder, PLATFORM, _FILES)
    simstate.check_private(folder, MASTER_SECRET)
    master = files[MASTER_SECRET]
    if len(master) != 32:
        raise simstate.corrupt(folder, "the master secret is not 32 bytes")
    try:
        info = json.loads(files[PLATFORM_JSON])
    except ValueError as exc:
        raise simstate.corrupt(folder, f"{PLATFORM_JSON} is not JSON") from exc
    if not isinstance(info, dict):
        raise simstate.corrupt(folder, f"{PLATFORM_JSON} is not an object")
    return SnpState(folder, master, info)


def load_state(home: Path | str | None = None) -> SnpState:
    """The SNP state under ``home`` (default ``sim_home()``), created on first use and
    loaded once per process while its manifest is unchanged (``simstate.load_state``)."""
    return simstate.load_state(PLATFORM, create_state, read_state, home)


def describe_state(folder: Path) -> str:
    """Human-readable account of the SNP state in ``folder`` (generates nothing)."""
    state = read_state(folder)
    lines = [f"AMD SEV-SNP (simulated): {folder}",
             f"  master secret: 32 bytes (mode 0600); created {state.info.get('created')}"]
    for product in PRODUCTS.values():
        sub = folder / product.key
        chip = state.chip_id(product).hex()
        tcb = product.default_tcb
        lines.append(f"  {product.name}: chip id {chip[:16]}{'…' if len(chip) > 16 else ''}, "
                     f"TCB {tcb.describe()}, firmware {'.'.join(map(str, product.firmware))}")
        if not sub.is_dir():
            lines.append("    chain: not generated yet (made on first use)")
            continue
        chain = _read_chain(product, sub)
        for label, cert in (("ARK", chain.ark), ("ASK", chain.ask), ("ASVK", chain.asvk)):
            lines.append(f"    {label}: {cert.subject.rfc4514_string()}  [RSA-"
                         f"{cert.public_key().key_size}, "  # type: ignore[union-attr]
                         f"{cert.not_valid_before_utc:%Y-%m-%d} .. "
                         f"{cert.not_valid_after_utc:%Y-%m-%d}]")
    return "\n".join(lines)
