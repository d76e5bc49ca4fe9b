"""A real, throwaway PostgreSQL server for the tests: ``initdb`` in a temporary directory,
run as an unprivileged user (PostgreSQL refuses to run as root), listening on a free
loopback port with trust authentication for its one role. ``.ci/run`` installs PostgreSQL
from Debian when it is missing; a machine without it fails these tests with a message
saying how to install it, it never skips them.

The server can be stopped and started again under the tests' control (``stop``/``start``),
to show what the service does while its database is down.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROLE = "attestcall"
START_TIMEOUT = 60  # seconds pg_ctl waits for the server to accept connections


class PostgresMissing(RuntimeError):
    """No PostgreSQL server binaries on this machine."""


def bindir() -> Path:
    """The directory of ``initdb`` and ``pg_ctl``: on PATH, else Debian's
    /usr/lib/postgresql/VERSION/bin (the newest)."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit()
                        else 0)
    if candidates:
        return Path(candidates[-1]).parent
    raise PostgresMissing(
        "PostgreSQL is not installed: the service's database tests run a real server. "
        "Install it (Debian: apt-get install postgresql) or run .ci/run, which does.")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run_as() -> tuple[str, int, int] | None:
    """The unprivileged user to run the server as when we are root, else None."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return name, entry.pw_uid, entry.pw_gid
    raise PostgresMissing("running as root with neither a postgres nor a nobody user")


class Cluster:
    """One PostgreSQL cluster in a temporary directory."""

    def __init__(self) -> None:
        self.bin = bindir()
        self.user = _run_as()
        self.root = Path(tempfile.mkdtemp(prefix="attestcall-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = 0
        if self.user is not None:
            os.chown(self.root, self.user[1], self.user[2])
        self.root.chmod(0o700)
        self._pg(["initdb", "-D", str(self.data), "-U", ROLE, "--auth=trust",
                  "--encoding=UTF8", "--locale=C", "--no-instructions"])
        self.start()

    def _pg(self, argv: list[str], check: bool = True) -> subprocess.CompletedProcess:
        kwargs = {}
        if self.user is not None:
            kwargs = {"user": self.user[1], "group": self.user[2], "extra_groups": []}
        completed = subprocess.run([str(self.bin / argv[0]), *argv[1:]], cwd=self.root,
                                   capture_output=True, text=True, timeout=120,
                                   env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                                        "LC_ALL": "C"}, **kwargs)
        if check and completed.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{argv[0]} failed ({completed.returncode}): "
                               f"{completed.stderr.strip()}\n{log}")
        return completed

    def start(self) -> None:
        """Start the server (on the port it had, the first time on a free one)."""
        for attempt in range(5):
            port = self.port or _free_port()
            options = (f"-c listen_addresses=127.0.0.1 -p {port} "
                       f"-c unix_socket_directories='{self.root}' -c fsync=off "
                       "-c synchronous_commit=off -c full_page_writes=off "
                       "-c max_connections=300")
            completed = self._pg(["pg_ctl", "-D", str(self.data), "-l", str(self.log),
                                  "-w", "-t", str(START_TIMEOUT), "-o", options, "start"],
                                 check=False)
            if completed.returncode == 0:
                self.port = port
                return
            if self.port or attempt == 4:  # a fixed port, or no luck after five
                raise RuntimeError(f"PostgreSQL did not start: {completed.stderr.strip()}\n"
                                   f"{self.log.read_text(errors='replace')[-2000:]}")
        raise AssertionError("unreachable")

    def stop(self) -> None:
        """Stop the server at once (connections are cut, nothing is lost)."""
        self._pg(["pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop"])

    @property
    def running(self) -> bool:
        return self._pg(["pg_ctl", "-D", str(self.data), "status"], check=False).returncode == 0

    def url(self, database: str = "postgres") -> str:
        """A ``postgresql://`` URL for one database of this server."""
        return f"postgresql://{ROLE}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A new empty database; its URL."""
        name = "t_" + secrets.token_hex(8)
        self.sql(f"CREATE DATABASE {name}")
        return self.url(name)

    def sql(self, statement: str, database: str = "postgres") -> list[tuple]:
        """Run one statement with autocommit (psycopg, straight to the server)."""
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.port, user=ROLE, dbname=database,
                             autocommit=True, connect_timeout=10) as connection:
            cursor = connection.execute(statement)
            return cursor.fetchall() if cursor.description else []

    def close(self) -> None:
        if self.data.exists():
            self._pg(["pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop"],
                     check=False)
        shutil.rmtree(self.root, ignore_errors=True)


@contextmanager
def cluster() -> Iterator[Cluster]:
    started = Cluster()
    try:
        yield started
    finally:
        started.close()

