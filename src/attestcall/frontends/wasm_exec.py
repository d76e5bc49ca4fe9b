"""The one Wasm executor: a WASI (preview 1) module in wasmtime with ``get_attestation``.

Both ways attestcall runs WebAssembly go through here: ``attestcall run`` (a module file,
this process's argv, environment and standard streams: :mod:`attestcall.frontends.wasm`)
and ``attestcall keep serve`` (a delivered module, an empty environment, output captured
per write and limits: :mod:`attestcall.deploy.runner`).

- :class:`WasmExecutor`: one wasmtime engine and the limits every module run on it gets:
  linear memory (``memory_limit`` bytes per store) and wall-clock run time
  (``run_timeout``, through epoch interruption: a ticker thread advances the engine's epoch
  every ``TICK_SECONDS``; a module past its deadline traps). It compiles modules.
- :class:`Wasi`: what the module sees of the world: argv, environment, stdin inherited or
  none, stdout and stderr inherited or handed to an :data:`OutputSink` at each write
  (wasmtime's custom output: no pipe, no polling, and the module blocks while the sink is
  busy; bound by :class:`attestcall.frontends.wasm_import.CustomOutput`).
- :class:`WasmInstance`: the module instantiated in its own store with WASI and
  ``attestation.get_attestation`` (:class:`attestcall.frontends.wasm_import.AttestationImport`
  over the caller's EvidenceSource); :meth:`WasmInstance.execute` calls ``_start``. Its
  ``close()`` releases the store and then the sink on the caller's thread: once it returns,
  no thread of wasmtime's enters Python for this instance (one that did while the process
  exits would abort it).

Exit statuses follow the wasmtime CLI: ``proc_exit(n)`` is n, returning from ``_start`` is
0, a trap is 134 (as if the program had aborted), any other runtime error 1. A Python
exception raised inside the import (a bug of the host, not the module's fault) is re-raised
to the caller, never turned into an exit status.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import wasmtime

from attestcall import abi
from attestcall.errors import PayloadError
from attestcall.frontends.wasm_import import (
    MEMORY_EXPORT,
    AttestationImport,
    CustomOutput,
    OutputSink,
    define_unchecked,
)

IMPORT_MODULE = "attestation"
IMPORT_NAME = "get_attestation"
ENTRY_POINT = "_start"
WASM_MAGIC = b"\0asm"
TRAP_EXIT_STATUS = 134  # 128 + SIGABRT, what the wasmtime CLI returns on a trap
ERROR_EXIT_STATUS = 1  # a runtime error that is neither an exit nor a trap
TICK_SECONDS = 0.05


def first_line(error: BaseException) -> str:
    """The summary line of a wasmtime error."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def last_line(error: BaseException) -> str:
    """The most specific line of a wasmtime error: the last 'Caused by' entry."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


class InvalidModule(PayloadError):
    """Bytes wasmtime cannot compile; ``error`` is wasmtime's error (callers word it)."""

    def __init__(self, error: wasmtime.WasmtimeError):
        super().__init__(first_line(error))
        self.error = error


class LinkFailed(PayloadError):
    """The module cannot be instantiated (an unknown import, a limit exceeded at start)."""

    def __init__(self, error: wasmtime.WasmtimeError):
        super().__init__(last_line(error))
        self.error = error


class NoEntryPoint(PayloadError):
    """The module does not export a ``_start`` function."""


class WasmExecutor:
    """A wasmtime engine and the limits of the modules it runs (None: unlimited)."""

    def __init__(self, *, memory_limit: int | None = None, run_timeout: float | None = None):
        config = wasmtime.Config()
        config.epoch_interruption = run_timeout is not None
        self.engine = wasmtime.Engine(config)
        # wasmtime ties a function type to the first engine that uses it: each executor has
        # its own import type.
        self.import_type = wasmtime.FuncType([wasmtime.ValType.i32()] * 5,
                                             [wasmtime.ValType.i32()])
        self.memory_limit = memory_limit
        self.run_timeout = run_timeout
        self._closed = threading.Event()
        self._ticker: threading.Thread | None = None
        if run_timeout is not None:
            self._ticker = threading.Thread(target=self._tick, name="wasm-epoch", daemon=True)
            self._ticker.start()

    def _tick(self) -> None:
        while not self._closed.wait(TICK_SECONDS):
            self.engine.increment_epoch()

    def close(self) -> None:
        """Stop the epoch ticker and wait for it (modules still running then never time
        out)."""
        self._closed.set()
        if self._ticker is not None and self._ticker is not threading.current_thread():
            self._ticker.join()

    def compile(self, wasm: bytes) -> wasmtime.Module:
        """Compile a WebAssembly binary. Raises InvalidModule."""
        try:
            return wasmtime.Module(self.engine, wasm)
        except wasmtime.WasmtimeError as exc:
            raise InvalidModule(exc) from exc

    def new_store(self) -> wasmtime.Store:
        """A store under this executor's limits."""
        store = wasmtime.Store(self.engine)
        if self.memory_limit is not None:
            store.set_limits(memory_size=self.memory_limit)
        if self.run_timeout is not None:
            store.set_epoch_deadline(max(1, math.ceil(self.run_timeout / TICK_SECONDS)))
        return store


@dataclass(frozen=True)
class Wasi:
    """The module's WASI world: ``argv`` (argv[0] included), ``env``, this process's stdin
    or none, and stdout/stderr inherited (``output`` None) or handed to ``output``."""

    argv: Sequence[str]
    env: Mapping[str, str]
    inherit_stdin: bool = True
    output: OutputSink | None = None

    def config(self, output: CustomOutput | None = None) -> wasmtime.WasiConfig:
        """The config; with a sink (``self.output``) its ``output`` binding (the caller
        releases it once the store is closed: :class:`CustomOutput`)."""
        config = wasmtime.WasiConfig()
        config.argv = list(self.argv)
        config.env = list(self.env.items())
        if self.inherit_stdin:
            config.inherit_stdin()
        if self.output is None:
            config.inherit_stdout()
            config.inherit_stderr()
        elif output is None:
            raise ValueError("a Wasi with an output sink needs its CustomOutput")
        else:
            output.install(config)
        return config


@dataclass(frozen=True)
class RunResult:
    """How ``_start`` ended: the exit status, and for a trap or another runtime error the
    most specific line of wasmtime's message (``failure``; None for an exit or a return)."""

    status: int
    failure: str | None = None


class WasmInstance:
    """One module instance with WASI and the get_attestation import, ready to run.

    Instantiating runs the module's start function, if any: a trap there propagates as
    ``wasmtime.Trap`` and an exit as ``wasmtime.ExitTrap``; any other failure to
    instantiate is LinkFailed, a module without ``_start`` NoEntryPoint. ``execute()``
    calls ``_start``. Tests and benchmarks may call other exports with :meth:`call` and inspect
    :attr:`memory`; a subclass may add imports by extending :meth:`define_imports`.
    """

    def __init__(
        self,
        executor: WasmExecutor,
        module: wasmtime.Module,
        source: abi.EvidenceSource,
        wasi: Wasi,
    ):
        self.executor = executor
        self.store = executor.new_store()
        self._output = CustomOutput(wasi.output) if wasi.output is not None else None
        try:
            self._instantiate(module, source, wasi)
        except BaseException:
            self.close()
            raise

    def _instantiate(self, module: wasmtime.Module, source: abi.EvidenceSource,
                     wasi: Wasi) -> None:
        self.store.set_wasi(wasi.config(self._output))
        self.attestation = AttestationImport(source)
        linker = wasmtime.Linker(self.executor.engine)
        self.define_imports(linker)
        try:
            with self.host_errors():
                self.instance = linker.instantiate(self.store, module)
        except wasmtime.Trap:
            raise  # the start function trapped: a runtime failure, not a bad module
        except wasmtime.ExitTrap:
            raise  # the start function exited
        except wasmtime.WasmtimeError as exc:
            raise LinkFailed(exc) from exc
        self.exports = self.instance.exports(self.store)
        entry = self.exports.get(ENTRY_POINT)
        if not isinstance(entry, wasmtime.Func):
            raise NoEntryPoint(f"the module does not export a {ENTRY_POINT} function")
        self._entry = entry

    def define_imports(self, linker: wasmtime.Linker) -> None:
        """WASI preview 1 and ``attestation.get_attestation``."""
        linker.define_wasi()
        define_unchecked(linker, IMPORT_MODULE, IMPORT_NAME, self.executor.import_type,
                         self.attestation)

    @contextlib.contextmanager
    def host_errors(self) -> Iterator[None]:
        """Re-raise a Python exception the import turned into a trap (a bug, not the
        module's fault)."""
        self.attestation.error = None
        try:
            yield
        except (wasmtime.Trap, wasmtime.WasmtimeError):
            error, self.attestation.error = self.attestation.error, None
            if error is not None:
                raise error from None
            raise

    @property
    def memory(self) -> wasmtime.Memory | None:
        memory = self.exports.get(MEMORY_EXPORT)
        return memory if isinstance(memory, wasmtime.Memory) else None

    def call(self, name: str, *params: Any) -> Any:
        """Call an exported function directly (traps and exits raise wasmtime's errors)."""
        func = self.exports[name]
        if not isinstance(func, wasmtime.Func):
            raise TypeError(f"export {name!r} is not a function")
        with self.host_errors():
            return func(self.store, *params)

    def execute(self) -> RunResult:
        """Run ``_start``: its exit status, as the wasmtime CLI would give it."""
        try:
            with self.host_errors():
                self._entry(self.store)
        except wasmtime.ExitTrap as exc:
            return RunResult(exc.code)
        except wasmtime.Trap as exc:
            return RunResult(TRAP_EXIT_STATUS, last_line(exc))
        except wasmtime.WasmtimeError as exc:
            return RunResult(ERROR_EXIT_STATUS, last_line(exc))
        return RunResult(0)

    def close(self) -> None:
        """Release the store, then the output sink, here and now (the instance cannot be
        used after)."""
        self.store.close()
        if self._output is not None:
            self._output.release()
