"""What a keep server is told (:class:`ServerSettings`) and what it saw
(:class:`ServerStats`)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from attestcall.deploy import protocol
from attestcall.deploy.runner import DEFAULT_MEMORY_LIMIT, DEFAULT_RUN_TIMEOUT


@dataclass(frozen=True)
class ServerSettings:
    """How a keep server behaves; the defaults suit a real deployment."""

    key_type: str | None = None  # default per technology (identity.DEFAULT_KEY_TYPES)
    max_tenants: int = 16  # sessions (workloads received and run) at once
    max_tenants_per_address: int = 4  # ... of them from one source address (IPv6: its /64)
    max_connections: int = 512  # connections open at once, handshaking ones included
    max_connections_per_address: int = 32  # ... of them from one source address
    handshake_timeout: float = 10.0  # from accept to the TLS handshake done
    read_timeout: float = 10.0
    receive_deadline: float = 120.0
    write_timeout: float = 30.0
    run_timeout: float = DEFAULT_RUN_TIMEOUT
    memory_limit: int = DEFAULT_MEMORY_LIMIT
    max_module_size: int = protocol.MAX_MODULE_SIZE


@dataclass
class ServerStats:
    """What the server saw (thread-safe); tests read it."""

    connections: int = 0
    handshake_failures: int = 0
    workload_bytes: int = 0  # payload bytes of WORKLOAD frames received, all tenants
    workloads_run: int = 0
    silent_tenants: int = 0  # closed after the handshake without sending a byte
    over_limit: int = 0  # connections closed at accept: too many, or too many from one address
    busy: int = 0  # tenants told the keep was busy (no session slot within the deadline)
    provisioned: int = 0  # launches finished with a tenant's key (SEV)
    provisioning_refusals: int = 0  # provisioning exchanges that ended in ERROR
    unprovisioned_tls: int = 0  # TLS attempts while the keep had no key yet
    finished: int = 0  # connections fully handled
    groups: dict[str, int] = field(default_factory=dict)  # handshakes per key-exchange group
    errors: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)

    def handshake(self, group: str | None) -> None:
        """A TLS handshake done on ``group``."""
        with self._lock:
            name = group or "unknown"
            self.groups[name] = self.groups.get(name, 0) + 1

    def error(self, message: str) -> None:
        with self._lock:
            self.errors.append(message)
