"""The untrusted host / loader side of the keep.

The host runs beside the shim (here: a thread of its own), waits for the shim's doorbell,
reads the request out of the request block, asks the platform (the simulated quoting
enclave, or one day the real one) and writes the reply into the block. Nothing it returns
is trusted: the shim validates every reply (see shim.py).
"""

from __future__ import annotations

import errno
import struct
import threading

from attestcall.keep.block import BlockError, Op, RequestBlock


class HostError(Exception):
    """The host could not serve a request; the status in the reply carries an errno."""

    def __init__(self, message: str, code: int = errno.EIO):
        super().__init__(message)
        self.code = code


class Host:
    """Serves the request block. Subclasses implement ``handle``; tests subclass it to be
    hostile (and may override ``process`` to corrupt the framing itself)."""

    def handle(self, op: int, data: bytes, limit: int) -> bytes:
        raise HostError(f"unsupported op {op}", errno.ENOSYS)

    def process(self, block: RequestBlock) -> None:
        """Answer the request in the block, whatever happens."""
        try:
            request = block.read_request()
        except BlockError:
            block.write_reply(0, 0, b"", errno.EPROTO)
            return
        try:
            reply = self.handle(request.op, request.data, request.limit)
        except HostError as exc:
            block.write_reply(request.op, request.seq, b"", exc.code)
            return
        except Exception:  # noqa: BLE001 - the platform failed; the shim sees an error status
            block.write_reply(request.op, request.seq, b"", errno.EIO)
            return
        block.write_reply(request.op, request.seq, reply)


class SgxHost(Host):
    """Relays the shim's REPORT to the (simulated) quoting enclave."""

    def __init__(self, quoting_enclave):
        self.qe = quoting_enclave

    def handle(self, op: int, data: bytes, limit: int) -> bytes:
        if op == Op.SGX_TARGET_INFO:
            return self.qe.target_info()
        if op == Op.SGX_QUOTE_SIZE:
            return struct.pack("<I", self.qe.quote_size())
        if op == Op.SGX_QUOTE:
            return self.qe.quote(data)
        return super().handle(op, data, limit)


class HostThread:
    """Runs a Host in a daemon thread; the shim rings it through ``ring``.

    The doorbell is two events: ``request`` (shim → host) and ``reply`` (host → shim)."""

    def __init__(self, host: Host, block: RequestBlock):
        self.host = host
        self.block = block
        self.request = threading.Event()
        self.reply = threading.Event()
        self._stop = False
        self._thread = threading.Thread(target=self._serve, name="attestcall-host", daemon=True)

    def start(self) -> HostThread:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop = True
        self.request.set()

    def _serve(self) -> None:
        while True:
            self.request.wait()
            self.request.clear()
            if self._stop:
                return
            self.host.process(self.block)
            self.reply.set()

    def ring(self, timeout: float) -> bool:
        """Wake the host and wait at most ``timeout`` seconds for it to reply."""
        self.reply.clear()
        self.request.set()
        return self.reply.wait(timeout)
