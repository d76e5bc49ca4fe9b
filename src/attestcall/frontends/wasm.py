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

import ctypes
import errno
import functools
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import wasmtime

from attestcall import abi
from attestcall.errors import PayloadError

IMPORT_MODULE = "attestation"
IMPORT_NAME = "get_attestation"
MEMORY_EXPORT = "memory"
ENTRY_POINT = "_start"
TRAP_EXIT_STATUS = 134  # 128 + SIGABRT, what the wasmtime CLI returns on a trap
ERROR_EXIT_STATUS = 1  # a runtime error that is neither an exit nor a trap

_U32 = 0xFFFFFFFF
_TECHNOLOGY_SIZE = 4

IMPORT_TYPE = wasmtime.FuncType([wasmtime.ValType.i32()] * 5, [wasmtime.ValType.i32()])


class LinearMemory:
    """An :class:`attestcall.abi.Memory` over a module's linear memory during one host call.

    One instance lives as long as the module instance and is re-armed by :meth:`begin` at
    each call (the memory may have grown, and moved, since the last one). The length and
    the base address are fetched at most once per call, and only when an access needs them.
    Reads and writes go straight through the base address with ctypes; no access is ever
    made outside ``[0, length)``.

    ``memory`` None stands for a module that exports no memory: every access faults.
    """

    __slots__ = ("_memory", "_caller", "_length", "_base", "_technology_ptr")

    def __init__(self, memory: wasmtime.Memory | None):
        self._memory = memory
        self._caller: Any = None
        self._length = -1
        self._base = 0
        self._technology_ptr = 0

    def begin(self, caller: wasmtime.Caller, technology_ptr: int) -> None:
        """Arm for one call. Writes are refused unless ``technology_ptr`` is in bounds too."""
        self._caller = caller
        self._length = -1
        self._technology_ptr = technology_ptr

    def end(self) -> None:
        self._caller = None

    def _address(self, address: int, length: int) -> int:
        """The host address of ``[address, address + length)``, or MemoryFault."""
        if self._length < 0:
            if self._memory is None:
                self._length = 0
            else:
                self._length = self._memory.data_len(self._caller)
                if self._length:
                    pointer = self._memory.data_ptr(self._caller)
                    self._base = ctypes.cast(pointer, ctypes.c_void_p).value or 0
        if address + length > self._length:
            raise abi.MemoryFault(
                f"{length} bytes at {address:#x} outside linear memory of {self._length} bytes"
            )
        return self._base + address

    def read(self, address: int, length: int) -> bytes:
        return ctypes.string_at(self._address(address, length), length)

    def write(self, address: int, data: bytes) -> None:
        # The technology is stored after the evidence; check its slot first so that a bad
        # technology_ptr leaves memory untouched.
        self._address(self._technology_ptr, _TECHNOLOGY_SIZE)
        target = self._address(address, len(data))
        ctypes.memmove(target, data, len(data))

    def store_u32(self, address: int, value: int) -> None:
        target = self._address(address, _TECHNOLOGY_SIZE)
        ctypes.memmove(target, (value & _U32).to_bytes(_TECHNOLOGY_SIZE, "little"), 4)


class AttestationImport:
    """The host function behind ``attestation.get_attestation`` for one module instance."""

    def __init__(self, source: abi.EvidenceSource):
        self.source = source
        self._memory: LinearMemory | None = None

    def _memory_for(self, caller: wasmtime.Caller) -> LinearMemory:
        # Resolved on the first call rather than after instantiation, so that a call from
        # the module's start function finds the memory too.
        export = caller.get(MEMORY_EXPORT)
        memory = LinearMemory(export if isinstance(export, wasmtime.Memory) else None)
        self._memory = memory
        return memory

    def __call__(
        self,
        caller: wasmtime.Caller,
        nonce_ptr: int,
        nonce_len: int,
        buf_ptr: int,
        buf_len: int,
        technology_ptr: int,
    ) -> int:
        memory = self._memory or self._memory_for(caller)
        technology_ptr &= _U32
        memory.begin(caller, technology_ptr)
        try:
            outcome = abi.get_attestation(
                nonce_ptr & _U32,
                nonce_len & _U32,
                buf_ptr & _U32,
                buf_len & _U32,
                memory=memory,
                source=self.source,
                ssize_max=abi.SSIZE_MAX_WASM32,
            )
            if outcome.technology is None:
                return outcome.ret
            if outcome.ret > abi.SSIZE_MAX_WASM32:
                # Only a size query can get here: an answer an i32 cannot carry.
                return -errno.EOVERFLOW
            try:
                memory.store_u32(technology_ptr, outcome.technology)
            except abi.MemoryFault:
                return -errno.EFAULT
            return outcome.ret
        finally:
            memory.end()


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

    ``run()`` calls ``_start`` and returns the exit status. Tests may also call other
    exports with :meth:`call` and inspect :attr:`memory`.
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
        linker = wasmtime.Linker(engine)
        linker.define_wasi()
        self.attestation = AttestationImport(source)
        linker.define_func(
            IMPORT_MODULE, IMPORT_NAME, IMPORT_TYPE, self.attestation, access_caller=True
        )
        try:
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

    @property
    def memory(self) -> wasmtime.Memory | None:
        memory = self.exports.get(MEMORY_EXPORT)
        return memory if isinstance(memory, wasmtime.Memory) else None

    def call(self, name: str, *params: Any) -> Any:
        """Call an exported function directly (traps and exits raise wasmtime's errors)."""
        func = self.exports[name]
        if not isinstance(func, wasmtime.Func):
            raise TypeError(f"export {name!r} is not a function")
        return func(self.store, *params)

    def run(self) -> int:
        """Run ``_start`` and return the exit status, as the wasmtime CLI would."""
        sys.stdout.flush()
        sys.stderr.flush()
        try:
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
