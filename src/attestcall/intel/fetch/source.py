"""Where the Intel verifier gets its collateral: an injected source it asks questions.

The verifier asks a :class:`CollateralSource` for exactly what one quote needs (as
go-sev-guest's verifier asks its ``HTTPSGetter``): the PCK CRL of the PCK CA that issued the
quote's PCK certificate ("processor" or "platform"), the root CA CRL, the TCB info for the
quote's TEE ("sgx"/"tdx") and FMSPC, and the QE identity for the TEE. Answers are the
``QuoteCollateralV3`` strings (hex CRLs, PEM issuer chains, the exact signed JSON text and
its hex signature); nothing in them is trusted until :mod:`attestcall.intel.verify.appraise` has
checked it.

Implementations here: :class:`Bundle` (one ``QuoteCollateralV3`` document: a path, its
text, a dict or a loaded :class:`Collateral`; it answers every question with its own
fields, and the verifier then reports any mismatch), :class:`MemorySource` (answers kept
in memory by question, for tests and services that hold collateral themselves) and
:class:`attestcall.intel.fetch.pcs.PcsSource` (a PCS/PCCS over HTTP with its disk cache).
:func:`collateral_source` turns what a user gave into a source.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from attestcall.errors import CollateralError
from attestcall.intel.formats.collateral import FIELDS, QE_ID_TDX, TCB_INFO_TDX, Collateral
from attestcall.lru import Lru

__all__ = [
    "Bundle", "CollateralSource", "IssuedCrl", "MemorySource", "Platform", "SignedText",
    "collateral_source", "gather",
]  # fmt: skip

PCK_CAS = ("processor", "platform")


@dataclass(frozen=True)
class SignedText:
    """A signed JSON document as served: its exact text, hex signature, PEM issuer chain."""

    text: str
    signature: str
    issuer_chain: str


@dataclass(frozen=True)
class IssuedCrl:
    """A CRL (DER, hex) and the PEM chain of its issuer."""

    crl: str
    issuer_chain: str


@dataclass(frozen=True)
class Platform:
    """What a quote says about the collateral it needs."""

    tee: str  # "sgx" or "tdx"
    fmspc: str  # upper-case hex
    ca: str  # "processor" or "platform"


@runtime_checkable
class CollateralSource(Protocol):
    """The questions the Intel verifier asks. Each answer raises
    :class:`CollateralError` if it cannot be had."""

    def pck_crl(self, ca: str) -> IssuedCrl: ...

    def root_ca_crl(self) -> str: ...

    def tcb_info(self, tee: str, fmspc: str) -> SignedText: ...

    def qe_identity(self, tee: str) -> SignedText: ...


class Bundle:
    """One loaded ``QuoteCollateralV3`` document, answering every question with its own
    fields (the verifier checks they fit the quote)."""

    def __init__(self, collateral: Collateral) -> None:
        if not isinstance(collateral, Collateral):
            raise TypeError("a Bundle holds a Collateral (see Collateral.load)")
        self.collateral = collateral
        self._fields = dict(zip(FIELDS, collateral.key, strict=True))

    @classmethod
    def load(cls, source: str | bytes | Path | dict[str, Any]) -> Bundle:
        """The bundle of a path, JSON text or bytes, or a dict; loaded once per exact
        content (a file: per path, size, inode and modification time), so that verifying
        again with the same collateral does not parse it again."""
        key = _load_key(source)
        if key is None:
            return cls(Collateral.load(source))
        return _BUNDLES.get_or_create(key, lambda: cls(Collateral.load(source)))

    def pck_crl(self, ca: str) -> IssuedCrl:
        f = self._fields
        return IssuedCrl(f["pck_crl"], f["pck_crl_issuer_chain"])

    def root_ca_crl(self) -> str:
        return self._fields["root_ca_crl"]

    def tcb_info(self, tee: str, fmspc: str) -> SignedText:
        f = self._fields
        return SignedText(f["tcb_info"], f["tcb_info_signature"], f["tcb_info_issuer_chain"])

    def qe_identity(self, tee: str) -> SignedText:
        f = self._fields
        return SignedText(
            f["qe_identity"], f["qe_identity_signature"], f["qe_identity_issuer_chain"]
        )


_BUNDLES: Lru[tuple[Any, ...], Bundle] = Lru(64)


def _load_key(source: Any) -> tuple[Any, ...] | None:
    """What identifies ``source``'s content without reading it, or None (not cached)."""
    if isinstance(source, dict):
        values = tuple(source.get(name) for name in FIELDS)
        return ("fields", values) if all(isinstance(v, str) for v in values) else None
    if isinstance(source, bytes):
        return ("content", source)
    if isinstance(source, str) and source.lstrip().startswith("{"):
        return ("content", source)
    if isinstance(source, str | Path):
        try:
            info = os.stat(source)
        except (OSError, ValueError):
            return None  # Collateral.load says what is wrong with it
        return ("file", os.fspath(source), info.st_ino, info.st_size, info.st_mtime_ns)
    return None


class MemorySource:
    """Answers kept in memory, by question. :meth:`add` files a whole collateral document
    under the TEE and FMSPC its TCB info names and the PCK CA its PCK CRL names; a question
    with no answer is a :class:`CollateralError`."""

    def __init__(self) -> None:
        self.pck_crls: dict[str, IssuedCrl] = {}
        self.root_crl: str | None = None
        self.tcb_infos: dict[tuple[str, str], SignedText] = {}
        self.qe_identities: dict[str, SignedText] = {}
        self.asked: list[tuple[str, ...]] = []

    def add(self, collateral: Collateral | str | bytes | Path | dict[str, Any]) -> MemorySource:
        if not isinstance(collateral, Collateral):
            collateral = Collateral.load(collateral)
        bundle = Bundle(collateral)
        info = collateral.tcb_info
        tee = "tdx" if info.id == TCB_INFO_TDX else "sgx"
        self.tcb_infos[(tee, info.fmspc.hex().upper())] = bundle.tcb_info(tee, "")
        qe_tee = "tdx" if collateral.qe_identity.id == QE_ID_TDX else "sgx"
        self.qe_identities[qe_tee] = bundle.qe_identity(qe_tee)
        issuer = collateral.pck_crl.issuer.rfc4514_string()
        for ca in PCK_CAS:
            if f"PCK {ca.capitalize()} CA" in issuer:
                self.pck_crls[ca] = bundle.pck_crl(ca)
        self.root_crl = bundle.root_ca_crl()
        return self

    def _answer(self, table: dict[Any, Any], key: Any, what: str) -> Any:
        self.asked.append((what, *(key if isinstance(key, tuple) else (key,))))
        try:
            return table[key]
        except KeyError:
            raise CollateralError(f"no {what} for {key!r} in memory") from None

    def pck_crl(self, ca: str) -> IssuedCrl:
        return self._answer(self.pck_crls, ca, "PCK CRL")  # type: ignore[no-any-return]

    def root_ca_crl(self) -> str:
        self.asked.append(("root CA CRL",))
        if self.root_crl is None:
            raise CollateralError("no root CA CRL in memory")
        return self.root_crl

    def tcb_info(self, tee: str, fmspc: str) -> SignedText:
        return self._answer(self.tcb_infos, (tee, fmspc.upper()), "TCB info")  # type: ignore[no-any-return]

    def qe_identity(self, tee: str) -> SignedText:
        return self._answer(self.qe_identities, tee, "QE identity")  # type: ignore[no-any-return]


_assembled: Lru[tuple[str, ...], Collateral] = Lru(256)  # the nine exact strings -> parsed


def gather(source: CollateralSource | Collateral, platform: Platform) -> Collateral:
    """Ask ``source`` what a quote on ``platform`` needs; the parsed collateral (parsed
    once per exact answer). A :class:`Bundle` or a loaded :class:`Collateral` already is
    the parsed answer to every question."""
    if isinstance(source, Collateral):
        return source
    if isinstance(source, Bundle):
        return source.collateral
    crl = source.pck_crl(platform.ca)
    root_crl = source.root_ca_crl()
    info = source.tcb_info(platform.tee, platform.fmspc)
    identity = source.qe_identity(platform.tee)
    values = (
        crl.issuer_chain, root_crl, crl.crl, info.issuer_chain, info.text, info.signature,
        identity.issuer_chain, identity.text, identity.signature,
    )  # fmt: skip
    return _assembled.get_or_create(
        values, lambda: Collateral.from_dict(dict(zip(FIELDS, values, strict=True)))
    )


def clear_assembled() -> None:
    _assembled.clear()
    _BUNDLES.clear()


def collateral_source(value: Any = None, url: str | None = None) -> CollateralSource:
    """A source from what a user gave: a source object as is; a :class:`Collateral`, a
    dict, JSON text or bytes, or a path to a ``QuoteCollateralV3`` document as a
    :class:`Bundle`; None with ``url`` (``--pccs``) as a PCS/PCCS over HTTP. None without
    a URL is a :class:`CollateralError` (Intel quotes need collateral)."""
    if value is not None and url is not None:
        raise CollateralError("give collateral or a PCCS URL, not both")
    if isinstance(value, Collateral):
        return Bundle(value)
    if isinstance(value, (str, bytes, Path, dict)):
        return Bundle.load(value)
    if value is None:
        if url is None:
            raise CollateralError("an Intel quote needs collateral: a file or a PCCS URL")
        from attestcall.intel.fetch.pcs import PcsSource  # HTTP only when asked for

        return PcsSource(url)
    if isinstance(value, CollateralSource):
        return value
    raise TypeError(f"not a collateral source: {type(value).__name__}")
