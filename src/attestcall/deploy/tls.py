"""TLS 1.3 contexts for the keep (server) and the tenant (client), stdlib ``ssl`` only.

The keep's private key never touches a file system: ``ssl`` loads keys only from paths, so
the PEM goes into an anonymous memory file (``memfd_create``) read back through
``/proc/self/fd``. Where memfd is missing, a private temporary directory (mode 0700, file
0600, removed at once) is the fallback.

The tenant's context verifies no chain and no host name: the keep's certificate is
self-signed and trusted only through the evidence it carries, checked by the tenant after
the handshake. TLS 1.3 still proves the keep holds the certificate's private key (the
CertificateVerify signature over the handshake transcript).
"""

from __future__ import annotations

import os
import ssl
import tempfile
from pathlib import Path

from attestcall.deploy.identity import KeepIdentity


def _load_pem(context: ssl.SSLContext, pem: bytes) -> None:
    memfd_create = getattr(os, "memfd_create", None)
    if memfd_create is not None and Path("/proc/self/fd").is_dir():
        fd = memfd_create("attestcall-keep-identity", getattr(os, "MFD_CLOEXEC", 0))
        try:
            os.write(fd, pem)
            context.load_cert_chain(f"/proc/self/fd/{fd}")
        finally:
            os.close(fd)
        return
    with tempfile.TemporaryDirectory(prefix="attestcall-") as folder:  # pragma: no cover
        path = Path(folder) / "identity.pem"
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(pem)
        context.load_cert_chain(str(path))


def server_context(identity: KeepIdentity) -> ssl.SSLContext:
    """TLS 1.3 only, serving ``identity``'s certificate; no client certificates."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.maximum_version = ssl.TLSVersion.TLSv1_3
    # No resumption: every tenant sees a full handshake and the certificate (TLS 1.3
    # tickets are off with num_tickets = 0; OP_NO_TICKET covers stateless tickets).
    context.options |= ssl.OP_NO_TICKET
    context.num_tickets = 0
    _load_pem(context, identity.pem())
    return context


def client_context() -> ssl.SSLContext:
    """TLS 1.3 only; the certificate is judged by its evidence, not by a CA."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.maximum_version = ssl.TLSVersion.TLSv1_3
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context
