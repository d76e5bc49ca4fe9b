"""Running a delivered Wasm module inside the keep, its output streamed as it is written.

``keep serve``'s adapter over the one executor, :mod:`attestcall.frontends.wasm_exec`
(``attestcall run`` uses the same one). The module gets WASI preview 1 (argv
``["workload.wasm", *args]``, an empty environment, no stdin, no preopened directories)
and ``attestation.get_attestation`` answered by the keep's own EvidenceSource. WASI stdout
and stderr go to a callback per write, which hands the bytes to whoever streams them: no
pipe, no polling, and the module blocks while the consumer is busy (back-pressure).

Limits: linear memory (``memory_limit``) and wall-clock run time (``run_timeout``; a module
past its deadline traps, exit status 134). Exit statuses are the wasmtime CLI's. A failure
at run time is reported on the module's stderr (``attestcall: workload trapped: ...``).
"""

from __future__ import annotations

from collections.abc import Sequence

import wasmtime

from attestcall import abi
from attestcall.errors import PayloadError
from attestcall.frontends.wasm_exec import (
    ENTRY_POINT,
    ERROR_EXIT_STATUS,
    TRAP_EXIT_STATUS,
    WASM_MAGIC,
    InvalidModule,
    LinkFailed,
    NoEntryPoint,
    RunResult,
    Wasi,
    WasmExecutor,
    WasmInstance,
    last_line,
)
from attestcall.frontends.wasm_import import STDERR, OutputSink

__all__ = ["OutputSink", "WasmSandbox", "WorkloadRejected"]

ARGV0 = "workload.wasm"
DEFAULT_RUN_TIMEOUT = 300.0
DEFAULT_MEMORY_LIMIT = 256 << 20


class WorkloadRejected(PayloadError):
    """The delivered module cannot be compiled, linked or started."""


class WasmSandbox:
    """One executor (with both limits) for every workload a keep runs."""

    def __init__(self, *, run_timeout: float = DEFAULT_RUN_TIMEOUT,
                 memory_limit: int = DEFAULT_MEMORY_LIMIT):
        self.executor = WasmExecutor(memory_limit=memory_limit, run_timeout=run_timeout)

    def close(self) -> None:
        self.executor.close()

    def compile(self, module: bytes) -> wasmtime.Module:
        """Compile a WebAssembly binary (text is refused). Raises WorkloadRejected."""
        if not module.startswith(WASM_MAGIC):
            raise WorkloadRejected("the workload is not a WebAssembly binary (bad magic)")
        try:
            return self.executor.compile(module)
        except InvalidModule as exc:
            raise WorkloadRejected(f"invalid WebAssembly module: {last_line(exc.error)}") \
                from None

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
        wasi = Wasi([ARGV0, *args], {}, inherit_stdin=False, output=sink)
        instance: WasmInstance | None = None
        try:
            instance = WasmInstance(self.executor, module, source, wasi)
            result = instance.execute()
        except wasmtime.ExitTrap as exc:  # the start function exited
            result = RunResult(exc.code)
        except wasmtime.Trap as exc:  # the start function trapped
            result = RunResult(TRAP_EXIT_STATUS, last_line(exc))
        except NoEntryPoint:
            raise WorkloadRejected(f"the module does not export a {ENTRY_POINT} function") \
                from None
        except LinkFailed as exc:
            text = str(exc.error)
            if "instantiat" not in text and "unknown import" not in text:
                result = RunResult(ERROR_EXIT_STATUS, str(exc))  # e.g. over the memory limit
            else:
                raise WorkloadRejected(f"cannot instantiate the module: {exc}") from None
        finally:
            if instance is not None:
                instance.close()
        if result.failure is not None:
            verb = "trapped" if result.status == TRAP_EXIT_STATUS else "failed"
            sink(STDERR, f"attestcall: workload {verb}: {result.failure}\n".encode())
        return result.status
