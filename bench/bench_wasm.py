"""Round trip of attestation.get_attestation from WebAssembly, against an empty import.

A WAT loop makes N calls with a real 64-byte nonce and a real output buffer; the source
answers technology 0 with size 0, so each call runs every check of the contract, reads the
nonce and stores the technology (no evidence to write). The baseline is the same loop, in
the same run, calling an empty host import with the same signature bound the same way
(wasmtime's C API, as the real import is). For scale, a third loop calls an empty import
bound with wasmtime-py's ``Linker.define_func``. Prints microseconds per call and the
difference (the target is at most 10 us per attestation call).

    python bench/bench_wasm.py [N]
"""

from __future__ import annotations

import ctypes
import sys
import tempfile
import time
from pathlib import Path

import wasmtime
from timing import missed

from attestcall.frontends.wasm import WasmKeep
from attestcall.frontends.wasm_import import define_unchecked
from attestcall.keep.shim import NoneSource

NONCE, BUFFER, TECHNOLOGY = 0x100, 0x200, 0x300

# One loop per import: call it n times with the same arguments, count non-zero results.
LOOP = """
  (func (export "{name}") (param $n i32) (result i32)
    (local $i i32) (local $bad i32)
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (if (i32.ne (call ${name} (i32.const {nonce}) (i32.const 64)
                                  (i32.const {buffer}) (i32.const 64)
                                  (i32.const {technology}))
                    (i32.const 0))
          (then (local.set $bad (i32.add (local.get $bad) (i32.const 1)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (local.get $bad))
"""
SIGNATURE = "(param i32 i32 i32 i32 i32) (result i32)"
IMPORTS = {"attest": ("attestation", "get_attestation"), "empty": ("bench", "empty"),
           "empty_py": ("bench", "empty_py")}


def module_text() -> str:
    imports = "".join(
        f'  (import "{module}" "{field}" (func ${name} {SIGNATURE}))\n'
        for name, (module, field) in IMPORTS.items()
    )
    loops = "".join(
        LOOP.format(name=name, nonce=NONCE, buffer=BUFFER, technology=TECHNOLOGY)
        for name in IMPORTS
    )
    header = '  (memory (export "memory") 1)\n  (func (export "_start"))\n'
    return f"(module\n{imports}{header}{loops})\n"




class EmptyImport:
    """The baseline host function: same signature, bound the same way, returns 0."""

    error: BaseException | None = None

    def __call__(self, caller: int, args: int) -> None:
        ctypes.c_int32.from_address(args).value = 0


def _empty_wasmtime_py(a: int, b: int, c: int, d: int, e: int) -> int:
    return 0


class BenchKeep(WasmKeep):
    """A WasmKeep whose module also imports the empty baselines."""

    def define_imports(self, linker: wasmtime.Linker) -> None:
        super().define_imports(linker)
        functype = self.executor.import_type
        define_unchecked(linker, "bench", "empty", functype, EmptyImport())
        linker.define_func("bench", "empty_py", functype, _empty_wasmtime_py)


def per_call_us(keep: WasmKeep, name: str, n: int, repeats: int = 5) -> float:
    """Best of ``repeats`` runs of the loop, in microseconds per call."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        failures = keep.call(name, n)
        elapsed = time.perf_counter() - start
        if failures:
            raise SystemExit(f"{name}: {failures} of {n} calls did not return 0")
        best = min(best, elapsed)
    return best / n * 1e6


TARGET_US = 10.0


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.wat"
        path.write_text(module_text())
        keep = BenchKeep(path, NoneSource(), env={})
    memory = keep.memory
    assert memory is not None
    memory.write(keep.store, bytes(range(64)), NONCE)
    memory.write(keep.store, b"\xff\xff\xff\xff", TECHNOLOGY)
    for name in IMPORTS:
        keep.call(name, 1000)  # warm up
    if bytes(memory.read(keep.store, TECHNOLOGY, TECHNOLOGY + 4)) != b"\0\0\0\0":
        raise SystemExit("get_attestation did not store technology 0")
    empty = per_call_us(keep, "empty", n)
    attest = per_call_us(keep, "attest", n)
    empty_py = per_call_us(keep, "empty_py", max(n // 10, 1))
    print(f"calls per loop                        {n}")
    print(f"empty import (C API binding)          {empty:8.2f} us/call")
    print(f"attestation.get_attestation           {attest:8.2f} us/call")
    print(f"difference                            {attest - empty:8.2f} us/call (target <= "
          f"{TARGET_US:.0f}){missed(attest - empty, TARGET_US)}")
    print(f"empty import (wasmtime-py define_func) {empty_py:7.2f} us/call, for scale")
    return 0 if attest - empty <= TARGET_US else 1


if __name__ == "__main__":
    raise SystemExit(main())
