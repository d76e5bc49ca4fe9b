"""The TEE plugin interface and its registry.

(An entry may also be a :class:`Backend` of its own, for a keep that serves several TEEs,
such as configfs-tsm.)

A TEE is described by one :class:`Tee` record: what it is (technology id, name, media type,
policy table), how to recognise and appraise its evidence, and where it has them, the keeps
that answer ``get_attestation`` with it (simulators and real devices) and its simulated
state. Records are found through the entry-point group ``attestcall.tees`` — the built-in
TEEs register there exactly as a third party would, in ``pyproject.toml``::

    [project.entry-points."attestcall.tees"]
    sgx = "attestcall.intel.sgx:TEE"

A record module imports nothing heavy at module level: every hook is a function that
imports what it needs when called, so loading the registry (for ``attestcall --help``)
costs only the small record modules. See docs/design.md, "The plugin interface".

This module is part of the bottom layer: it imports only the standard library and
:mod:`attestcall.errors`, so vendor packages may depend on it.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from attestcall.errors import AttestcallError, UsageError

GROUP = "attestcall.tees"


class RegistryError(AttestcallError):
    """A registered TEE record is unusable: not a Tee, or its id or a name is taken."""


# ----------------------------------------------------------------------- keep side


class Channel(Protocol):
    """The trusted shim's end of the request block (see attestcall.keep.shim.Channel).

    ``call`` sends one request and returns the host's reply, at most ``limit`` bytes;
    every failure raises a :class:`attestcall.abi.PlatformFailure`."""

    def call(self, op: int, data: bytes, limit: int) -> bytes: ...

    def ask_size(self, op: int, minimum: int = 1) -> int: ...


class HostHandler(Protocol):
    """The untrusted host's per-TEE logic: answer one request op. Raise
    :class:`attestcall.errors.HostError` to answer with an errno status."""

    def handle(self, op: int, data: bytes, limit: int) -> bytes: ...


class KeepServices(Protocol):
    """What the keep gives a plugin's keep opener."""

    def start_host(self, handler: HostHandler) -> Channel:
        """Start ``handler`` in an untrusted host process of its own, behind a request
        block; return the shim's channel to it. The keep stops the process on close."""
        ...


@dataclass
class OpenedKeep:
    """What a keep opener returns: the shim's EvidenceSource (see attestcall.abi), details
    for people and tests, and, for pre-attestation keeps, the object that provisions it."""

    source: Any
    details: dict[str, Any] = field(default_factory=dict)
    provisioner: Any = None

    def close(self) -> None:
        """Nothing to stop: a keep opened without a host process (the keep machinery
        stops the host of the keeps that have one)."""

    def __enter__(self) -> OpenedKeep:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class Probe:
    """One real backend on this machine: usable or not, and why."""

    name: str
    path: str
    usable: bool
    detail: str
    technology: int | None = None


KeepOpener = Callable[[bytes, Mapping[str, Any], KeepServices], OpenedKeep]


def refuse_unknown_options(options: Mapping[str, Any], known: Collection[str],
                           keep: str) -> None:
    """:class:`UsageError` for an option given to keep ``keep`` that is not in ``known``:
    one set to a value (None, or a mapping of Nones such as unset identity overrides, is
    no option given)."""
    for key, value in options.items():
        if key in known or value is None:
            continue
        if isinstance(value, Mapping) and all(v is None for v in value.values()):
            continue
        raise UsageError(f"option {key!r} does not apply to {keep}")


@dataclass(frozen=True)
class Backend:
    """A way to answer get_attestation: a simulator, or a real device interface.

    ``opener(payload, options, services)`` starts it. A real backend has ``probe(options)``
    (for ``--tee auto`` and ``attestcall devices``); ``order`` sorts the probes."""

    name: str
    opener: KeepOpener
    simulated: bool
    probe: Callable[[Mapping[str, Any]], Probe] | None = None
    order: int = 100


@dataclass(frozen=True)
class Option:
    """A command-line option of a TEE's keeps (``attestcall run``, ``attest``, ``keep
    serve``). ``kind``: ``"flag"``, ``"u16"``, ``"u64"``, ``"hex:N"`` (N bytes;
    ``"hex:32|64"``: either size), or ``"choice"`` with ``choices`` (ints or strings). The
    value reaches the opener's options under ``key``; options not given are absent."""

    flags: tuple[str, ...]
    key: str
    kind: str
    help: str
    choices: tuple[Any, ...] = ()


@dataclass(frozen=True)
class SimState:
    """A simulator's persistent state: one folder under the simulated-platform home."""

    folder: str
    create: Callable[[Any], None]  # (folder: Path) -> None, writes fresh state
    describe: Callable[[Any], str]  # (folder: Path) -> text for `attestcall sim show`


@dataclass(frozen=True)
class TsmProvider:
    """How a configfs-tsm provider (``/sys/kernel/config/tsm/report/*/provider``) gives
    this TEE's evidence: ``outblob``, followed by ``auxblob`` when ``auxblob`` is set;
    ``privlevel`` says whether the provider takes one; ``outblob_size`` pins its size."""

    name: str
    auxblob: bool = False
    privlevel: bool = False
    outblob_size: int | None = None


# ------------------------------------------------------------------- verifier side


Checker = Callable[[str, Any], Any]


@dataclass(frozen=True)
class PolicyTable:
    """A TEE's policy table ``[name]``: ``schema`` maps each key to a checker (where,
    value) -> normalised value (raising PolicyError); ``check(table, appraisal)`` returns
    every reason the table refuses genuine evidence. ``ear_claims`` names the AR4SI claim
    each of its own keys speaks about in an EAR ("executables", "configuration",
    "hardware", "runtime-opaque"), beside the keys :mod:`attestcall.ear` knows already."""

    schema: Mapping[str, Checker]
    check: Callable[[Mapping[str, Any], Any], list[str]] | None = None
    ear_claims: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Tee:
    """One technology. Only ``technology`` and ``name`` are required.

    - ``title``: what its evidence is called in messages ("SGX quote").
    - ``media_type``: the CMW media type of its evidence in a keep certificate.
    - ``recognise(evidence) -> bool``: whether the bytes are this TEE's evidence.
    - ``appraise(evidence, collateral, at, roots) -> Appraisal``: signatures, chains,
      collateral; ``collateral`` is what ``collateral_source`` made, ``roots`` extra
      trusted roots (the simulated ones, when asked for).
    - ``collateral_source(value, url) -> object``: the user's collateral (a path, bytes,
      a loaded object or None) and service URL made into what ``appraise`` asks.
    - ``collateral_options``: the ``verify`` options that feed it, (file option, URL
      option or None), e.g. ("--collateral", "--pccs"). ``verify`` and ``deploy`` get the
      file option from here when they do not have it yet, with ``collateral_help`` as its
      help.
    - ``collateral_service``: the service collateral comes from when the user names
      none: (environment variable that overrides it, default URL, what is fetched), e.g.
      ("ATTESTCALL_PCCS_URL", "https://api.trustedservices.intel.com", "Intel collateral").
      ``needs_collateral(evidence) -> bool``: whether evidence needs it at all (an SNP
      report whose certificate table has its key does not); None: always.
    - ``simulated_evidence(evidence) -> bool``: the evidence's own chain ends at a
      simulated root (its collateral is then the simulators', never fetched).
    - ``collateral_document(evidence, url) -> bytes``: what verification needs for the
      evidence, as a file ``verify`` reads (``attestcall collateral``), fetched from
      ``url`` (None: nothing is fetched).
    - ``revocation_option``: the ``verify`` option of a separate revocation list it takes
      ("--crl"), if any; ``collateral_source`` then also gets ``crl=`` (the list's content
      or path).
    - ``simulated_roots() -> list``: this machine's simulated roots (never created here);
      ``simulated_collateral(evidence) -> value``: the local simulator's collateral.
    - ``policy``: its policy table; ``debug_word``: what a debug instance is called.
    - ``report_data(evidence) -> bytes``: the 64 bytes the nonce went into.
    - ``measurement_claim``: the appraisal claim holding its launch measurement (hex), what
      the attestation service certifies and a tenant's policy checks by the same key
      ("mrenclave"); "" for a TEE with no measurement (none); None: it has no claim the
      service can certify.
    - ``enarx_oid`` / ``enarx_value(evidence)``: Enarx's certificate extension, if any;
      ``enarx_matches(value, evidence)`` when its value is not simply ``enarx_value``'s.
    - ``pre_attestation``: ``buf`` is a key delivered at launch, not evidence;
      ``launch_digest(payload)``: what its simulator measures for a keep of ``payload``.
    - ``tsm``: the configfs-tsm provider that gives this evidence, if any.
    - ``backends``, ``keep_options``, ``sim_state``: the keeps that answer with it.
    - ``describe(data) -> dict | None``: ``attestcall show``'s decoder, without verifying:
      the fields of this TEE's evidence (or of its vendor's certificates) by their
      specification's names as a tree (:mod:`attestcall.describe`), None when the bytes
      are not its; an :class:`~attestcall.errors.AttestcallError` when they are but do not
      parse. The tree has ``kind`` and, for evidence, ``technology``.
    """

    technology: int
    name: str
    title: str = ""
    media_type: str | None = None
    recognise: Callable[[bytes], bool] | None = None
    appraise: Callable[..., Any] | None = None
    collateral_source: Callable[[Any, str | None], Any] | None = None
    collateral_options: tuple[str, str | None] | None = None
    collateral_help: str = ""
    revocation_option: str | None = None
    collateral_service: tuple[str, str, str] | None = None
    needs_collateral: Callable[[bytes], bool] | None = None
    simulated_evidence: Callable[[bytes], bool] | None = None
    collateral_document: Callable[[bytes, str | None], bytes] | None = None
    simulated_roots: Callable[[], list[Any]] | None = None
    simulated_collateral: Callable[[bytes], Any] | None = None
    policy: PolicyTable | None = None
    debug_word: str = "instance"
    report_data: Callable[[bytes], bytes] | None = None
    measurement_claim: str | None = None
    default_key_type: str = "p256"
    launch_digest: Callable[[bytes], bytes] | None = None
    enarx_oid: str | None = None
    enarx_value: Callable[[bytes], bytes | None] | None = None
    enarx_matches: Callable[[bytes, bytes], bool] | None = None
    pre_attestation: bool = False
    tsm: TsmProvider | None = None
    backends: tuple[Backend, ...] = ()
    keep_options: tuple[Option, ...] = ()
    sim_state: SimState | None = None
    describe: Callable[[bytes], dict[str, Any] | None] | None = None

    @property
    def label(self) -> str:
        """The name people read: ``SGX``."""
        return self.name.upper()

    @property
    def verifiable(self) -> bool:
        return self.appraise is not None


def lazy(target: str) -> Callable[..., Any]:
    """The function ``"module:name"``, imported on its first call: how a plugin record
    names its heavier hooks without importing them when the registry loads."""
    module, _, name = target.partition(":")
    loaded: list[Callable[..., Any]] = []

    def call(*args: Any, **kwargs: Any) -> Any:
        if not loaded:
            loaded.append(getattr(importlib.import_module(module), name))
        return loaded[0](*args, **kwargs)

    call.__name__ = call.__qualname__ = name
    call.__doc__ = f"{target}, imported on first use."
    return call


# ------------------------------------------------------------------------ registry


class Registry:
    """The TEEs found in the entry-point group, indexed by id, name and backend name."""

    def __init__(self, records: Sequence[Tee | Backend]):
        generic = [r for r in records if isinstance(r, Backend)]
        records = [r for r in records if not isinstance(r, Backend)]
        self.tees: tuple[Tee, ...] = tuple(sorted(records, key=lambda t: t.technology))
        self._by_id: dict[int, Tee] = {}
        self._by_name: dict[str, Tee] = {}
        self._backends: dict[str, tuple[Tee | None, Backend]] = {}
        for tee in self.tees:
            if not isinstance(tee, Tee):
                raise RegistryError(f"{tee!r} registered in {GROUP} is not a Tee record")
            if tee.technology in self._by_id:
                raise RegistryError(f"technology {tee.technology} is registered twice "
                                    f"({self._by_id[tee.technology].name}, {tee.name})")
            if tee.name in self._by_name:
                raise RegistryError(f"TEE name {tee.name!r} is registered twice")
            self._by_id[tee.technology] = tee
            self._by_name[tee.name] = tee
            for backend in tee.backends:
                if backend.name in self._backends or backend.name == "auto":
                    raise RegistryError(f"keep name {backend.name!r} is registered twice")
                self._backends[backend.name] = (tee, backend)
        for backend in generic:  # a backend of no single TEE (configfs-tsm serves several)
            if backend.name in self._backends or backend.name == "auto":
                raise RegistryError(f"keep name {backend.name!r} is registered twice")
            self._backends[backend.name] = (None, backend)

    def by_id(self, technology: int) -> Tee | None:
        return self._by_id.get(int(technology))

    def by_name(self, name: str) -> Tee | None:
        return self._by_name.get(name)

    def get(self, name: str) -> Tee:
        """The TEE called ``name``; UsageError naming the known ones otherwise."""
        tee = self._by_name.get(name)
        if tee is None:
            raise UsageError(f"unknown technology {name!r}; choose one of "
                             f"{', '.join(t.name for t in self.verifiable())}")
        return tee

    def verifiable(self) -> list[Tee]:
        return [t for t in self.tees if t.verifiable]

    def collateral_file_options(self) -> list[str]:
        """Every TEE's collateral file option (``--collateral``, ``--certs``, ...), once
        each, in technology order."""
        options = [t.collateral_options[0] for t in self.tees if t.collateral_options]
        return list(dict.fromkeys(options))

    def collateral_url_options(self) -> list[str]:
        """Every TEE's collateral service option (``--pccs``, ``--kds``), once each."""
        options = [t.collateral_options[1] for t in self.tees
                   if t.collateral_options and t.collateral_options[1]]
        return list(dict.fromkeys(options))

    def backend(self, name: str) -> tuple[Tee | None, Backend] | None:
        """The backend called ``name`` and its TEE (None for one that serves several)."""
        return self._backends.get(name)

    def backend_names(self) -> list[str]:
        return list(self._backends)

    def real_backends(self) -> list[Backend]:
        """Every backend with a probe, in probing order."""
        found = [b for _, b in self._backends.values() if b.probe is not None]
        return sorted(found, key=lambda backend: backend.order)

    def by_tsm_provider(self, provider: str) -> Tee | None:
        return next((t for t in self.tees if t.tsm and t.tsm.name == provider), None)

    def recognise(self, evidence: bytes) -> Tee | None:
        """The TEE whose evidence these bytes are, or None."""
        for tee in self.tees:
            if tee.recognise is not None and tee.recognise(evidence):
                return tee
        return None

    def label(self, technology: int) -> str:
        """``SGX`` for 2; ``unknown`` for an id nobody registered."""
        tee = self.by_id(technology)
        return tee.label if tee is not None else "unknown"


_lock = threading.Lock()
_registry: Registry | None = None


def entry_points(group: str = GROUP) -> list[tuple[str, str]]:
    """(name, "module:attribute") of every entry point in ``group`` of the distributions
    on ``sys.path``, the first distribution of a name winning, as importlib.metadata finds
    them. Read directly from each ``*.dist-info/entry_points.txt`` (or ``.egg-info``):
    importing importlib.metadata alone costs the command line more than the whole scan
    (``bench/bench_cli_start.py``)."""
    found: list[tuple[str, str]] = []
    seen: set[str] = set()
    for folder in sys.path:
        try:
            names = sorted(os.listdir(folder or "."))
        except OSError:
            continue
        for name in names:
            stem, dot, suffix = name.rpartition(".")
            if not dot or suffix not in ("dist-info", "egg-info"):
                continue
            distribution = stem.split("-")[0].lower().replace("-", "_").replace(".", "_")
            if distribution in seen:
                continue
            seen.add(distribution)
            try:
                with open(os.path.join(folder or ".", name, "entry_points.txt"),
                          encoding="utf-8") as handle:
                    text = handle.read()
            except OSError:
                continue
            found += _section(text, group)
    return found


def _section(text: str, group: str) -> list[tuple[str, str]]:
    """The ``name = value`` lines of the ``[group]`` section of an entry_points.txt."""
    entries, inside = [], False
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            inside = line[1:-1].strip() == group
        elif inside and "=" in line:
            name, _, value = line.partition("=")
            entries.append((name.strip(), value.strip()))
    return entries


def _load_record(name: str, value: str) -> Any:
    module, _, attribute = value.partition(":")
    try:
        record: Any = importlib.import_module(module.strip())
        for part in attribute.strip().split(".") if attribute.strip() else ():
            record = getattr(record, part)
    except Exception as exc:  # noqa: BLE001 - a broken plugin must be named, not crash
        raise RegistryError(f"TEE plugin {name!r} ({value}) cannot be loaded: "
                            f"{type(exc).__name__}: {exc}") from exc
    return record


def _load() -> Registry:
    return Registry([_load_record(name, value) for name, value in entry_points()])


def registry() -> Registry:
    """The registry, loaded once per process from the ``attestcall.tees`` entry points."""
    global _registry
    if _registry is None:
        with _lock:
            if _registry is None:
                _registry = _load()
    return _registry
