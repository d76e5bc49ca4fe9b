"""Round trip of attestation.get_attestation from WebAssembly, against an empty import.

A WAT loop makes N calls with a real 64-byte nonce and a real output buffer; the source
answers technology 0 with size 0, so the call runs every check of the contract, reads the
nonce, stores the technology and writes no evidence. The same loop calling an empty host
import with the same signature, in the same run, is the baseline. Prints microseconds per
call for both and their difference (the target is at most 10 us per attestation call).

    python bench/bench_wasm.py [N]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import wasmtime

from attestcall.frontends.wasm import IMPORT_TYPE, WasmKeep, default_engine

# The same loop twice: $attest calls the real import, $empty calls "bench.empty".
WAT = """
(module
  (import "attestation" "get_attestation"
    (func $get_attestation (param i32 i32 i32 i32 i32) (result i32)))
  (import "bench" "empty"
    (func $empty (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start"))
  (func (export "attest") (param $n i32) (result i32)
    (local $i i32) (local $bad i32)
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        ;; nonce at 0x100 (64 bytes), buffer at 0x200 (64 bytes), technology at 0x300
        (if (i32.ne (call $get_attestation (i32.const 0x100) (i32.const 64)
                                           (i32.const 0x200) (i32.const 64)
                                           (i32.const 0x300))
                    (i32.const 0))
          (then (local.set $bad (i32.add (local.get $bad) (i32.const 1)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (local.get $bad))
  (func (export "empty") (param $n i32) (result i32)
    (local $i i32) (local $bad i32)
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (if (i32.ne (call $empty (i32.const 0x100) (i32.const 64)
                                 (i32.const 0x200) (i32.const 64)
                                 (i32.const 0x300))
                    (i32.const 0))
          (then (local.set $bad (i32.add (local.get $bad) (i32.const 1)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (local.get $bad))
)
"""


class EmptySource:
    """No TEE: technology 0, size 0."""

    technology = 0

    def evidence_size(self) -> int:
        return 0

    def evidence(self, nonce: bytes) -> bytes:
        return b""


def _empty(caller: wasmtime.Caller, a: int, b: int, c: int, d: int, e: int) -> int:
    return 0


class BenchKeep(WasmKeep):
    """A WasmKeep whose module may also import ``bench.empty``."""

    def __init__(self, path: Path):
        engine = default_engine()
        original = wasmtime.Linker.define_wasi

        def define_wasi_and_empty(linker: wasmtime.Linker) -> None:
            original(linker)
            linker.define_func("bench", "empty", IMPORT_TYPE, _empty, access_caller=True)

        wasmtime.Linker.define_wasi = define_wasi_and_empty  # type: ignore[method-assign]
        try:
            super().__init__(path, EmptySource(), env={}, engine=engine)
        finally:
            wasmtime.Linker.define_wasi = original  # type: ignore[method-assign]


def per_call_us(keep: WasmKeep, name: str, n: int, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        failures = keep.call(name, n)
        elapsed = time.perf_counter() - start
        if failures:
            raise SystemExit(f"{name}: {failures} calls did not return 0")
        best = min(best, elapsed)
    return best / n * 1e6


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.wat"
        path.write_text(WAT)
        keep = BenchKeep(path)
    memory = keep.memory
    assert memory is not None
    memory.write(keep.store, bytes(range(64)), 0x100)
    keep.call("attest", 1000)  # warm up
    keep.call("empty", 1000)
    empty = per_call_us(keep, "empty", n, 5)
    attest = per_call_us(keep, "attest", n, 5)
    technology = memory.read(keep.store, 0x300, 0x304)
    assert bytes(technology) == b"\0\0\0\0"
    print(f"calls per run           {n}")
    print(f"empty import            {empty:8.2f} us/call")
    print(f"get_attestation import  {attest:8.2f} us/call")
    print(f"difference              {attest - empty:8.2f} us/call (target <= 10)")


if __name__ == "__main__":
    main()
