"""WebAssembly front end: run a WASI (preview 1) module in wasmtime with get_attestation.

The module imports::

    (import "attestation" "get_attestation"
      (func (param i32 i32 i32 i32 i32) (result i32)))

with the parameters ``nonce_ptr, nonce_len, buf_ptr, buf_len, technology_ptr``. The import
is a thin adapter over :func:`attestcall.abi.get_attestation` with
``ssize_max=SSIZE_MAX_WASM32``: the i32 arguments are read as unsigned, every access to the
module's exported ``memory`` is bounds-checked, the result is the core's return value
(bytes written, or a negative errno), and on success and size queries the technology is
stored as a little-endian u32 at ``technology_ptr``. Nothing is written unless the call
succeeds in full: an out-of-bounds ``technology_ptr`` gives ``-EFAULT`` before any
evidence byte lands in memory.

WASI gives the module its argv (argv[0] is the module path as given), an environment and
the standard streams of this process. Exit statuses follow the wasmtime CLI: ``proc_exit(n)``
is n, returning from ``_start`` is 0, a trap is 134 (as if the program had aborted).
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import wasmtime

from attestcall import abi
from attestcall.errors import PayloadError
from attestcall.frontends.wasm_import import (
    IMPORT_TYPE,
    MEMORY_EXPORT,
    AttestationImport,
    define_unchecked,
)

IMPORT_MODULE = "attestation"
IMPORT_NAME = "get_attestation"
ENTRY_POINT = "_start"
TRAP_EXIT_STATUS = 134  # 128 + SIGABRT, what the wasmtime CLI returns on a trap
ERROR_EXIT_STATUS = 1  # a runtime error that is neither an exit nor a trap


@functools.cache
def default_engine() -> wasmtime.Engine:
    """One engine for the process; compiled modules and stores hang off it."""
    return wasmtime.Engine()


def _first_line(error: Exception) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def _cause(error: Exception) -> str:
    """The most specific line of a wasmtime error: the last 'Caused by' entry."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


def load_module(path: str | Path, engine: wasmtime.Engine | None = None) -> wasmtime.Module:
    """Compile a ``.wasm`` (binary) or ``.wat`` (text) file. Raises PayloadError."""
    engine = engine or default_engine()
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise PayloadError(f"cannot read {path}: {e.strerror or e}") from e
    is_binary = data.startswith(b"\0asm")
    if Path(path).suffix == ".wasm" and not is_binary:
        raise PayloadError(f"{path}: not a WebAssembly binary (bad magic number)")
    try:
        wasm = data if is_binary else wasmtime.wat2wasm(data)
    except wasmtime.WasmtimeError as e:
        raise PayloadError(f"{path}: invalid WebAssembly text: {_first_line(e)}") from e
    try:
        return wasmtime.Module(engine, wasm)
    except wasmtime.WasmtimeError as e:
        raise PayloadError(f"{path}: invalid WebAssembly module: {_first_line(e)}") from e


def _wasi_config(argv: Sequence[str], env: Mapping[str, str]) -> wasmtime.WasiConfig:
    config = wasmtime.WasiConfig()
    config.argv = list(argv)
    config.env = list(env.items())
    config.inherit_stdin()
    config.inherit_stdout()
    config.inherit_stderr()
    return config


class WasmKeep:
    """One WASI module instance with the get_attestation import, ready to run.

    ``run()`` calls ``_start`` and returns the exit status. Tests and benchmarks may also
    call other exports with :meth:`call` and inspect :attr:`memory`; a subclass may add
    imports by extending :meth:`define_imports`.
    """

    def __init__(
        self,
        path: str | Path,
        source: abi.EvidenceSource,
        *,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        engine: wasmtime.Engine | None = None,
    ):
        self.path = str(path)
        engine = engine or default_engine()
        module = load_module(path, engine)
        self.store = wasmtime.Store(engine)
        self.store.set_wasi(_wasi_config([self.path, *args], os.environ if env is None else env))
        self.attestation = AttestationImport(source)
        linker = wasmtime.Linker(engine)
        self.define_imports(linker)
        try:
            with self._host_errors():
                self.instance = linker.instantiate(self.store, module)
        except wasmtime.Trap:
            raise  # the start function trapped: a runtime failure, not a bad module
        except wasmtime.WasmtimeError as e:
            raise PayloadError(f"{self.path}: cannot instantiate: {_cause(e)}") from e
        self.exports = self.instance.exports(self.store)
        entry = self.exports.get(ENTRY_POINT)
        if not isinstance(entry, wasmtime.Func):
            raise PayloadError(f"{self.path}: module does not export a {ENTRY_POINT} function")
        self._entry = entry

    def define_imports(self, linker: wasmtime.Linker) -> None:
        """WASI preview 1 and ``attestation.get_attestation``."""
        linker.define_wasi()
        define_unchecked(linker, IMPORT_MODULE, IMPORT_NAME, IMPORT_TYPE, self.attestation)

    @contextlib.contextmanager
    def _host_errors(self) -> Iterator[None]:
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
        with self._host_errors():
            return func(self.store, *params)

    def run(self) -> int:
        """Run ``_start`` and return the exit status, as the wasmtime CLI would."""
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            with self._host_errors():
                self._entry(self.store)
        except wasmtime.ExitTrap as e:
            return e.code
        except wasmtime.Trap as e:
            _report(self.path, _cause(e))
            return TRAP_EXIT_STATUS
        except wasmtime.WasmtimeError as e:
            _report(self.path, _cause(e))
            return ERROR_EXIT_STATUS
        return 0


def _report(path: str, message: str) -> None:
    print(f"attestcall: {path}: {message}", file=sys.stderr, flush=True)


def run_wasm(
    path: str | Path,
    args: Sequence[str],
    source: abi.EvidenceSource,
    *,
    env: Mapping[str, str] | None = None,
) -> int:
    """Run a WASI module (``.wasm`` or ``.wat``) as a payload and return its exit status.

    ``env`` defaults to this process's environment. Raises PayloadError for a module that
    cannot be read, compiled, linked or has no ``_start``.
    """
    try:
        keep = WasmKeep(path, source, args=args, env=env)
    except wasmtime.Trap as e:
        _report(str(path), _cause(e))
        return TRAP_EXIT_STATUS
    return keep.run()
