"""The ``attestation.get_attestation`` host function, bound through wasmtime's C API.

wasmtime-py's ``Linker.define_func`` costs about 10 us per call before the host function
runs (it wraps the caller and converts every parameter to a ``Val``). A round trip of the
import should cost a few microseconds, so this module binds host functions with the C
API's ``wasmtime_linker_define_func_unchecked``: the callback gets the raw argument array
and the caller pointer, and reaches linear memory through ``wasmtime_memory_data`` and
``wasmtime_memory_data_size``. The C functions come from the library wasmtime-py ships
(``wasmtime._ffi.dll``), with private prototypes so wasmtime-py's own are left alone; the
struct layouts are wasmtime-py's, so they match that library by construction.

A Python exception inside a host function becomes a wasm trap; the exception is kept on
the host function (``error``) for the caller of the module to re-raise.

WASI stdout and stderr handed to Python (:class:`CustomOutput`) are bound here too, with no
finalizer: wasmtime-wasi writes them from a tokio worker thread and drops them there, after
the store is closed, so wasmtime-py's ``stdout_custom`` (whose finalizer is Python) could
enter Python from that thread while the interpreter finalizes; Python then ends the thread
with ``pthread_exit``, whose forced unwind through the Rust thread's entry aborts the
process ("panic in a function that cannot unwind", SIGABRT at exit).
"""

from __future__ import annotations

import ctypes
import errno
import functools
import itertools
from collections.abc import Callable
from ctypes import POINTER, c_bool, c_char_p, c_size_t, c_ssize_t, c_void_p
from typing import Protocol

import wasmtime
from wasmtime import _ffi as ffi  # the C API bindings bundled with wasmtime-py

from attestcall import abi

_U32 = 0xFFFFFFFF
_TECHNOLOGY_SIZE = 4
MEMORY_EXPORT = "memory"
STDOUT, STDERR = 1, 2

OutputSink = Callable[[int, bytes], None]


def _c_function(name: str, restype: object, *argtypes: object) -> ctypes._CFuncPtr:
    function = ffi.dll[name]  # indexing makes a fresh function object, ours to configure
    function.restype = restype
    function.argtypes = list(argtypes)
    return function


_MemoryRef = POINTER(ffi.wasmtime_memory_t)
_caller_context = _c_function("wasmtime_caller_context", c_void_p, c_void_p)
_caller_export_get = _c_function(
    "wasmtime_caller_export_get", c_bool, c_void_p, c_char_p, c_size_t,
    POINTER(ffi.wasmtime_extern_t),
)
_memory_data = _c_function("wasmtime_memory_data", c_void_p, c_void_p, _MemoryRef)
_memory_data_size = _c_function("wasmtime_memory_data_size", c_size_t, c_void_p, _MemoryRef)
_trap_new = _c_function("wasmtime_trap_new", c_void_p, c_char_p, c_size_t)

# size_t callback(void *env, wasmtime_caller_t *caller, wasmtime_val_raw_t *args, size_t n)
# returns NULL or a wasm_trap_t *; results overwrite args from index 0.
_CALLBACK = ctypes.CFUNCTYPE(c_size_t, c_void_p, c_void_p, c_void_p, c_size_t)
_FINALIZER = ctypes.CFUNCTYPE(None, c_void_p)
_define_func_unchecked = _c_function(
    "wasmtime_linker_define_func_unchecked", c_void_p,
    c_void_p, c_char_p, c_size_t, c_char_p, c_size_t, c_void_p, _CALLBACK, c_void_p, _FINALIZER,
)

# ssize_t output(void *data, const uint8_t *buf, size_t len): bytes taken, or -errno
_OUTPUT = ctypes.CFUNCTYPE(c_ssize_t, c_void_p, c_void_p, c_size_t)
_set_stdout_custom = _c_function("wasi_config_set_stdout_custom", None,
                                 c_void_p, _OUTPUT, c_void_p, c_void_p)
_set_stderr_custom = _c_function("wasi_config_set_stderr_custom", None,
                                 c_void_p, _OUTPUT, c_void_p, c_void_p)

# A raw value is a 16-byte union; an i32 sits in its first 4 bytes (little-endian).
_SLOT = ctypes.sizeof(ffi.wasmtime_val_raw_t) // 4
_Args5 = ctypes.c_int32 * (5 * _SLOT)


class HostFunction(Protocol):
    """A host function for :func:`define_unchecked`: reads its parameters from the raw
    argument array at ``args`` and writes its results there. ``error`` keeps the last
    Python exception that became a trap."""

    error: BaseException | None

    def __call__(self, caller: int, args: int) -> None: ...


_HOST_FUNCTIONS: dict[int, HostFunction] = {}
_KEYS = itertools.count(1)
_TRAP_MESSAGE = b"host function raised a Python exception"


@_CALLBACK
def _trampoline(key: int, caller: int, args: int, count: int) -> int:
    function = _HOST_FUNCTIONS[key]
    try:
        function(caller, args)
    except BaseException as e:  # never let an exception unwind through wasm
        function.error = e
        return _trap_new(_TRAP_MESSAGE, len(_TRAP_MESSAGE)) or 0
    return 0


@_FINALIZER
def _finalize(key: int) -> None:
    _HOST_FUNCTIONS.pop(key, None)


def define_unchecked(
    linker: wasmtime.Linker,
    module: str,
    name: str,
    functype: wasmtime.FuncType,
    function: HostFunction,
) -> None:
    """Define ``module.name`` in ``linker`` as ``function`` (kept alive until wasmtime
    drops the definition)."""
    key = next(_KEYS)
    _HOST_FUNCTIONS[key] = function
    module_bytes, name_bytes = module.encode(), name.encode()
    error = _define_func_unchecked(
        ctypes.cast(linker.ptr(), c_void_p), module_bytes, len(module_bytes),
        name_bytes, len(name_bytes), ctypes.cast(functype.ptr(), c_void_p),
        _trampoline, key, _finalize,
    )
    if error:
        _HOST_FUNCTIONS.pop(key, None)
        raise wasmtime.WasmtimeError._from_ptr(ctypes.cast(error, POINTER(ffi.wasmtime_error_t)))


_OUTPUTS: dict[int, Callable[[bytes], None]] = {}


@_OUTPUT
def _write_output(key: int, data: int, size: int) -> int:
    """A WASI write to a custom stdout or stderr (on one of wasmtime-wasi's threads)."""
    writer = _OUTPUTS.get(key)
    if writer is None:  # released: the store is closed
        return -errno.EBADF
    try:
        writer(ctypes.string_at(data, size) if size else b"")
    except BaseException:  # never let an exception unwind through wasmtime
        return -errno.EIO
    return size


class CustomOutput:
    """A WASI config's stdout and stderr handed to ``sink(stream, data)`` at each write.

    wasmtime is given no finalizer: it keeps the streams after the store is closed and drops
    them on a thread of its own, where nothing may enter Python once the interpreter may be
    finalizing. The sink is released by :meth:`release` instead, on the caller's thread,
    once the store that writes to it is closed; a write after that fails with ``EBADF``.
    """

    def __init__(self, sink: OutputSink):
        self._keys = {STDOUT: next(_KEYS), STDERR: next(_KEYS)}
        for stream, key in self._keys.items():
            _OUTPUTS[key] = functools.partial(sink, stream)

    def install(self, config: wasmtime.WasiConfig) -> None:
        """Make ``config``'s stdout and stderr write to the sink."""
        pointer = ctypes.cast(config.ptr(), c_void_p)
        _set_stdout_custom(pointer, _write_output, self._keys[STDOUT], None)
        _set_stderr_custom(pointer, _write_output, self._keys[STDERR], None)

    def release(self) -> None:
        """Forget the sink (after the store is closed)."""
        for key in self._keys.values():
            _OUTPUTS.pop(key, None)


class LinearMemory:
    """An :class:`attestcall.abi.Memory` over a module's linear memory during one host call.

    One instance lives as long as the module instance and is re-armed by :meth:`begin` at
    each call (the memory may have grown, and moved, since the last one). The length and
    base address are fetched at most once per call, and only when an access needs them.
    No access is ever made outside ``[0, length)``. ``memory`` None stands for a module
    that exports no memory: every access faults.
    """

    __slots__ = ("_memory", "_context", "_length", "_base", "_technology_ptr")

    def __init__(self, memory: ffi.wasmtime_memory_t | None):
        self._memory = None if memory is None else ctypes.pointer(memory)
        self._context: int | None = None
        self._length = -1
        self._base = 0
        self._technology_ptr = 0

    def begin(self, context: int, technology_ptr: int) -> None:
        """Arm for one call. Writes are refused unless ``technology_ptr`` is in bounds too."""
        self._context = context
        self._length = -1
        self._technology_ptr = technology_ptr

    def _address(self, address: int, length: int) -> int:
        """The host address of ``[address, address + length)``, or MemoryFault."""
        if self._length < 0:
            if self._memory is None:
                self._length = 0
            else:
                self._length = _memory_data_size(self._context, self._memory)
                self._base = _memory_data(self._context, self._memory) or 0
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
        ctypes.memmove(self._address(address, len(data)), data, len(data))

    def store_u32(self, address: int, value: int) -> None:
        target = self._address(address, _TECHNOLOGY_SIZE)
        ctypes.memmove(target, (value & _U32).to_bytes(_TECHNOLOGY_SIZE, "little"), 4)


def _exported_memory(caller: int) -> ffi.wasmtime_memory_t | None:
    item = ffi.wasmtime_extern_t()
    name = MEMORY_EXPORT.encode()
    if not _caller_export_get(caller, name, len(name), ctypes.byref(item)):
        return None
    if item.kind != ffi.WASMTIME_EXTERN_MEMORY.value:
        return None
    return item.of.memory


class AttestationImport:
    """``attestation.get_attestation(nonce_ptr, nonce_len, buf_ptr, buf_len, technology_ptr)
    -> i32`` for one module instance, over :func:`attestcall.abi.get_attestation`."""

    def __init__(self, source: abi.EvidenceSource):
        self.source = source
        self.error: BaseException | None = None
        self._memory: LinearMemory | None = None

    def __call__(self, caller: int, args: int) -> None:
        values = _Args5.from_address(args)
        context = _caller_context(caller)
        memory = self._memory
        if memory is None:
            # Resolved at the first call, not after instantiation, so that a call from
            # the module's start function finds the memory too.
            memory = self._memory = LinearMemory(_exported_memory(caller))
        values[0] = self.answer(
            memory,
            context,
            values[0] & _U32,
            values[_SLOT] & _U32,
            values[2 * _SLOT] & _U32,
            values[3 * _SLOT] & _U32,
            values[4 * _SLOT] & _U32,
        )

    def answer(
        self,
        memory: LinearMemory,
        context: int,
        nonce_ptr: int,
        nonce_len: int,
        buf_ptr: int,
        buf_len: int,
        technology_ptr: int,
    ) -> int:
        """One call with unsigned arguments; returns the i32 result."""
        memory.begin(context, technology_ptr)
        outcome = abi.get_attestation(
            nonce_ptr,
            nonce_len,
            buf_ptr,
            buf_len,
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
