"""Running a delivered Wasm module inside the keep, its output streamed as it is written.

The module gets WASI preview 1 (argv ``["workload.wasm", *args]``, an empty environment,
no stdin, no preopened directories) and ``attestation.get_attestation`` answered by the
keep's own EvidenceSource through :class:`attestcall.frontends.wasm_import.AttestationImport`
— the same adapter ``attestcall run`` uses. WASI stdout and stderr go to a callback per
write (wasmtime's custom output), which hands the bytes to whoever streams them: no pipe,
no polling, and the module blocks while the consumer is busy (back-pressure).

Limits: linear memory (``memory_limit``) and wall-clock run time (``run_timeout``, through
epoch interruption: a ticker thread advances the engine's epoch; a module past its
deadline traps, exit status 134). Exit statuses are the wasmtime CLI's, as in
:mod:`attestcall.frontends.wasm`.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence

import wasmtime

from attestcall import abi
from attestcall.errors import PayloadError
from attestcall.frontends.wasm import (
    ENTRY_POINT,
    ERROR_EXIT_STATUS,
    IMPORT_MODULE,
    IMPORT_NAME,
    TRAP_EXIT_STATUS,
)
from attestcall.frontends.wasm_import import AttestationImport, define_unchecked

WASM_MAGIC = b"\0asm"
ARGV0 = "workload.wasm"
TICK_SECONDS = 0.05
DEFAULT_RUN_TIMEOUT = 300.0
DEFAULT_MEMORY_LIMIT = 256 << 20
STDOUT, STDERR = 1, 2

OutputSink = Callable[[int, bytes], None]


class WorkloadRejected(PayloadError):
    """The delivered module cannot be compiled, linked or started."""


def _last_line(error: Exception) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


class WasmSandbox:
    """One engine (with epoch interruption) for every workload a keep runs."""

    def __init__(self, *, run_timeout: float = DEFAULT_RUN_TIMEOUT,
                 memory_limit: int = DEFAULT_MEMORY_LIMIT):
        config = wasmtime.Config()
        config.epoch_interruption = True
        self.engine = wasmtime.Engine(config)
        # wasmtime ties a function type to the first engine that uses it: this engine gets
        # its own (never the shared attestcall.frontends.wasm_import.IMPORT_TYPE).
        self.import_type = wasmtime.FuncType([wasmtime.ValType.i32()] * 5,
                                             [wasmtime.ValType.i32()])
        self.run_timeout = run_timeout
        self.memory_limit = memory_limit
        self._closed = threading.Event()
        self._ticker = threading.Thread(target=self._tick, name="wasm-epoch", daemon=True)
        self._ticker.start()

    def _tick(self) -> None:
        while not self._closed.wait(TICK_SECONDS):
            self.engine.increment_epoch()

    def close(self) -> None:
        self._closed.set()

    def compile(self, module: bytes) -> wasmtime.Module:
        """Compile a WebAssembly binary (text is refused). Raises WorkloadRejected."""
        if not module.startswith(WASM_MAGIC):
            raise WorkloadRejected("the workload is not a WebAssembly binary (bad magic)")
        try:
            return wasmtime.Module(self.engine, module)
        except wasmtime.WasmtimeError as exc:
            raise WorkloadRejected(f"invalid WebAssembly module: {_last_line(exc)}") from None

    def run(
        self,
        module: wasmtime.Module,
        args: Sequence[str],
        source: abi.EvidenceSource,
        sink: OutputSink,
    ) -> int:
        """Run ``module``'s ``_start`` and return its exit status; every write to stdout or
        stderr reaches ``sink(stream, data)`` as it happens. Raises WorkloadRejected for a
        module that cannot be linked or has no ``_start``."""
        store = wasmtime.Store(self.engine)
        try:
            return self._run(store, module, args, source, sink)
        finally:
            store.close()

    def _run(self, store: wasmtime.Store, module: wasmtime.Module, args: Sequence[str],
             source: abi.EvidenceSource, sink: OutputSink) -> int:
        store.set_limits(memory_size=self.memory_limit)
        store.set_epoch_deadline(max(1, math.ceil(self.run_timeout / TICK_SECONDS)))
        wasi = wasmtime.WasiConfig()
        wasi.argv = [ARGV0, *args]
        wasi.env = []
        wasi.stdout_custom = lambda data: sink(STDOUT, bytes(data))
        wasi.stderr_custom = lambda data: sink(STDERR, bytes(data))
        store.set_wasi(wasi)
        linker = wasmtime.Linker(self.engine)
        linker.define_wasi()
        attestation = AttestationImport(source)
        define_unchecked(linker, IMPORT_MODULE, IMPORT_NAME, self.import_type, attestation)
        try:
            instance = linker.instantiate(store, module)
            entry = instance.exports(store).get(ENTRY_POINT)
            if not isinstance(entry, wasmtime.Func):
                raise WorkloadRejected(f"the module does not export a {ENTRY_POINT} function")
            entry(store)
        except wasmtime.ExitTrap as exc:
            return exc.code
        except wasmtime.Trap as exc:
            self._host_error(attestation)
            sink(STDERR, f"attestcall: workload trapped: {_last_line(exc)}\n".encode())
            return TRAP_EXIT_STATUS
        except wasmtime.WasmtimeError as exc:
            self._host_error(attestation)
            message = _last_line(exc)
            if "instantiat" in str(exc) or "unknown import" in str(exc):
                raise WorkloadRejected(f"cannot instantiate the module: {message}") from None
            sink(STDERR, f"attestcall: workload failed: {message}\n".encode())
            return ERROR_EXIT_STATUS
        return 0

    @staticmethod
    def _host_error(attestation: AttestationImport) -> None:
        """Re-raise a Python exception raised inside the import (a keep bug)."""
        error, attestation.error = attestation.error, None
        if error is not None:
            raise error
