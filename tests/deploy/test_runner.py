"""WasmSandbox, the executor `keep serve` runs workloads on: the output sink, and what of
it wasmtime still holds once a run has returned."""

from __future__ import annotations

import threading
import weakref

import wasmtime

from attestcall.deploy.runner import OutputSink, WasmSandbox
from attestcall.frontends.wasm_import import STDERR, STDOUT
from tests.deploy.conftest import expected_stdout
from tests.fakes.source import FixedSource


def recording_sink(writes: list[tuple[int, bytes]], released: list[int]) -> OutputSink:
    """A sink only its caller's callee holds; ``released`` gets the id of the thread that
    drops it."""

    def sink(stream: int, data: bytes) -> None:
        writes.append((stream, data))

    weakref.finalize(sink, lambda: released.append(threading.get_ident()))
    return sink


def test_the_sink_gets_both_streams_and_is_released_here_before_run_returns(workload):
    # wasmtime-wasi writes the streams from a tokio thread and drops them there later; a
    # Python finalizer run from that thread while the interpreter finalizes aborts the
    # process (SIGABRT at the keep's exit). Nothing of the sink may be left to that thread.
    sandbox = WasmSandbox()
    try:
        module = sandbox.compile(wasmtime.wat2wasm(workload))
        writes: list[tuple[int, bytes]] = []
        released: list[int] = []
        status = sandbox.run(module, [], FixedSource(technology=2, size=500),
                             recording_sink(writes, released))
        assert released == [threading.get_ident()]
    finally:
        sandbox.close()
    assert status == 42
    assert b"".join(data for stream, data in writes if stream == STDOUT) == \
        expected_stdout("sgx-sim", 500)
    assert b"".join(data for stream, data in writes if stream == STDERR) == \
        b"a line on stderr\n"
