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

This is ``attestcall run``'s adapter over the one executor,
:mod:`attestcall.frontends.wasm_exec` (``keep serve`` uses the same one): it reads the
module from a file, gives it this process's world and reports failures on stderr.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import wasmtime

from attestcall import abi
from attestcall.errors import PayloadError
from attestcall.frontends.wasm_exec import (
    ENTRY_POINT,
    TRAP_EXIT_STATUS,
    WASM_MAGIC,
    InvalidModule,
    LinkFailed,
    NoEntryPoint,
    Wasi,
    WasmExecutor,
    WasmInstance,
    first_line,
    last_line,
)

__all__ = [
    "TRAP_EXIT_STATUS",
    "WasmKeep",
    "default_executor",
    "load_module",
    "run_wasm",
]


@functools.cache
def default_executor() -> WasmExecutor:
    """One executor (no limits) for the process; compiled modules and stores hang off it."""
    return WasmExecutor()


def load_module(path: str | Path, executor: WasmExecutor | None = None) -> wasmtime.Module:
    """Compile a ``.wasm`` (binary) or ``.wat`` (text) file. Raises PayloadError."""
    executor = executor or default_executor()
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise PayloadError(f"cannot read {path}: {e.strerror or e}") from e
    is_binary = data.startswith(WASM_MAGIC)
    if Path(path).suffix == ".wasm" and not is_binary:
        raise PayloadError(f"{path}: not a WebAssembly binary (bad magic number)")
    try:
        wasm = data if is_binary else wasmtime.wat2wasm(data)
    except wasmtime.WasmtimeError as e:
        raise PayloadError(f"{path}: invalid WebAssembly text: {first_line(e)}") from e
    try:
        return executor.compile(wasm)
    except InvalidModule as e:
        raise PayloadError(f"{path}: invalid WebAssembly module: {e}") from e


class WasmKeep(WasmInstance):
    """A module file instantiated with WASI (this process's streams) and the
    get_attestation import, ready to run.

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
        executor: WasmExecutor | None = None,
    ):
        self.path = str(path)
        executor = executor or default_executor()
        module = load_module(path, executor)
        wasi = Wasi([self.path, *args], os.environ if env is None else env)
        try:
            super().__init__(executor, module, source, wasi)
        except wasmtime.ExitTrap as e:
            raise PayloadError(f"{self.path}: cannot instantiate: {last_line(e)}") from e
        except LinkFailed as e:
            raise PayloadError(f"{self.path}: cannot instantiate: {e}") from e
        except NoEntryPoint as e:
            raise PayloadError(f"{self.path}: module does not export a {ENTRY_POINT} "
                               "function") from e

    def run(self) -> int:
        """Run ``_start`` and return the exit status, as the wasmtime CLI would."""
        sys.stdout.flush()
        sys.stderr.flush()
        result = self.execute()
        if result.failure is not None:
            _report(self.path, result.failure)
        return result.status


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
        _report(str(path), last_line(e))
        return TRAP_EXIT_STATUS
    return keep.run()
