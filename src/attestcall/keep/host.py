"""The untrusted host / loader side of the keep.

The host runs beside the shim (in a process of its own), waits for the shim's doorbell,
reads the request out of the request block, asks the platform (the simulated quoting
enclave, or one day the real one) and writes the reply into the block. Nothing it returns
is trusted: the shim validates every reply (see shim.py).
"""

from __future__ import annotations

import ctypes
import errno
import os
import select
import signal
import time
from typing import NoReturn

from attestcall.errors import HostError
from attestcall.keep.block import BlockError, RequestBlock


class Host:
    """Serves the request block. Subclasses implement ``handle``; tests subclass it to be
    hostile (and may override ``process`` to corrupt the framing itself). A TEE plugin's
    handler (:class:`attestcall.tees.HostHandler`, any object with ``handle``) is wrapped
    in one by :meth:`for_handler`."""

    @staticmethod
    def for_handler(handler: object) -> Host:
        """``handler`` itself when it is a Host, else a Host that asks it (and serves the
        block with the handler's own ``process`` when it has one, as hostile tests do)."""
        if isinstance(handler, Host):
            return handler
        host = Host()
        host.handle = handler.handle  # type: ignore[attr-defined, method-assign]
        if hasattr(handler, "process"):
            host.process = handler.process  # type: ignore[attr-defined, method-assign]
        return host

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


class HostProcess:
    """Runs a Host in a process of its own, the untrusted side of the trust boundary.

    The host shares nothing with the shim but the request block (an anonymous shared
    mapping made before the fork) and two pipes used as doorbells: ``ring`` writes one byte
    to wake the host and waits, bounded, for one byte back. The host process ignores the
    terminal's SIGINT/SIGQUIT (Ctrl-C is the payload's), dies with its parent, and exits
    when the shim closes the doorbell."""

    def __init__(self, host: Host, block: RequestBlock):
        self.host = host
        self.block = block
        self.pid = 0
        self._request_w = self._reply_r = -1

    def start(self) -> HostProcess:
        request_r, request_w = os.pipe()
        reply_r, reply_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the host; never returns
            os.close(request_w)
            os.close(reply_r)
            _serve(self.host, self.block, request_r, reply_w)
        os.close(request_r)
        os.close(reply_w)
        os.set_blocking(reply_r, False)
        self.pid, self._request_w, self._reply_r = pid, request_w, reply_r
        return self

    def ring(self, timeout: float) -> bool:
        """Wake the host and wait at most ``timeout`` seconds for it to say it replied.
        False when it did not (hung, dead, or never started)."""
        if self._request_w < 0:
            return False
        try:  # forget wake-ups left by a host that answered after an earlier timeout
            while os.read(self._reply_r, 64):
                pass
        except BlockingIOError:
            pass
        try:
            os.write(self._request_w, b"\x01")
        except OSError:  # the host is gone
            return False
        ready, _, _ = select.select([self._reply_r], [], [], timeout)
        if not ready:
            return False
        try:
            return os.read(self._reply_r, 1) == b"\x01"
        except BlockingIOError:
            return False

    def stop(self, grace: float = 1.0) -> None:
        """Close the doorbell (the host exits) and reap the host, killing it if it hangs."""
        if self._request_w < 0:
            return
        os.close(self._request_w)
        os.close(self._reply_r)
        self._request_w = self._reply_r = -1
        deadline = time.monotonic() + grace
        try:
            while os.waitpid(self.pid, os.WNOHANG) == (0, 0):
                if time.monotonic() > deadline:
                    os.kill(self.pid, signal.SIGKILL)
                    os.waitpid(self.pid, 0)
                    break
                time.sleep(0.005)
        except ChildProcessError:
            pass  # already reaped (a supervisor's waitpid(-1) may collect it)


def _serve(host: Host, block: RequestBlock, request_r: int, reply_w: int) -> NoReturn:
    """The host process's loop: one request per doorbell byte, until EOF."""
    code = 0
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGQUIT, signal.SIG_IGN)
        _die_with_parent()
        while os.read(request_r, 1):
            host.process(block)
            os.write(reply_w, b"\x01")
    except BaseException:  # noqa: BLE001 - a crashed host simply stops answering
        code = 1
    finally:
        os._exit(code)


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(0)


_PR_SET_PDEATHSIG = 1
