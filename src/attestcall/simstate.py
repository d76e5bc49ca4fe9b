"""The per-user state of the simulated platforms: roots, keys, TCB levels.

Layout::

    sim_home()                 $ATTESTCALL_HOME, else $XDG_DATA_HOME/attestcall
                               (default ~/.local/share/attestcall); mode 0700
      sgx/                     one folder per simulated platform, mode 0700
        state.json             the manifest, written last: format, files and their SHA-256
        *.key.pem              private keys, PKCS#8 PEM, mode 0600
        ...

A platform folder is created whole or not at all: it is written into a private temporary
folder next to it and renamed into place, so two processes creating it at once both end
up using the one that won. A folder whose manifest is missing, or whose files do not match
it, raises :class:`SimStateError` telling the user to run ``attestcall sim reset``.

Each simulator comes from its TEE's plugin record (``Tee.sim_state``, see
:mod:`attestcall.tees`): a folder name, ``create(folder)`` (write the files and the
manifest, :func:`write_manifest`) and ``describe(folder) -> str``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from attestcall.errors import SimStateError
from attestcall.lru import Lru
from attestcall.tees import SimState, registry

MANIFEST = "state.json"
T = TypeVar("T")
FORMAT = 1
RESET_HINT = "run `attestcall sim reset` to recreate it"



def sim_home() -> Path:
    """The state directory: $ATTESTCALL_HOME, else $XDG_DATA_HOME/attestcall."""
    explicit = os.environ.get("ATTESTCALL_HOME")
    if explicit:
        return Path(explicit).expanduser()
    data = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return Path(data) / "attestcall"


def _home(home: Path | str | None) -> Path:
    return Path(home) if home is not None else sim_home()


def ensure_home(home: Path | str | None = None) -> Path:
    """Create the home directory (mode 0700) if it does not exist; return it."""
    path = _home(home)
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=False)
    except FileExistsError:
        if not path.is_dir():
            raise SimStateError(f"{path} exists and is not a directory") from None
    except OSError as exc:
        raise SimStateError(f"cannot create {path}: {exc.strerror}") from exc
    return path


# ------------------------------------------------------------------- writing (creation)


def write_private(path: Path, data: bytes) -> None:
    """Write a secret file created with mode 0600 (never readable by others, not even briefly)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def write_private_key(path: Path, key: PrivateKeyTypes) -> None:
    """A private key as unencrypted PKCS#8 PEM, mode 0600."""
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_private(path, pem)


def write_public(path: Path, data: bytes) -> None:
    """A public file (certificate, JSON), mode 0644."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def write_manifest(folder: Path, platform: str, files: Iterable[str]) -> None:
    """Write the manifest last: each file's SHA-256, so a partial or altered folder is caught."""
    digests = {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in files}
    manifest = {"format": FORMAT, "platform": platform, "files": digests}
    write_public(folder / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True).encode() + b"\n")


def platform_dir(
    name: str, create: Callable[[Path], None], home: Path | str | None = None
) -> Path:
    """The folder of platform ``name``, created atomically by ``create`` on first use."""
    root = ensure_home(home)
    folder = root / name
    if folder.exists():
        return folder
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=root))  # mode 0700
    try:
        create(tmp)
        if not (tmp / MANIFEST).is_file():
            raise SimStateError(f"creating the {name} state wrote no manifest")
        try:
            os.rename(tmp, folder)
        except OSError:
            if not folder.is_dir():
                raise
            # Another process created it first: use theirs.
    except OSError as exc:
        raise SimStateError(f"cannot create {folder}: {exc.strerror}") from exc
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


# ------------------------------------------------------------------- reading (loading)


# Every simulator's loaded state, one cache policy for all: keyed by the folder and the
# identity of every file in it (inode, size, mode, change times), so a reset, a tampered
# file or a loosened permission, by any process, is noticed on the next load.
_LOADED: Lru[tuple[Any, ...], tuple[Any, Any]] = Lru(32)


def load_state(
    name: str,
    create: Callable[[Path], None],
    read: Callable[[Path], T],
    home: Path | str | None = None,
    *,
    depends: object = None,
) -> T:
    """Platform ``name``'s state, created on first use by ``create``, read by ``read`` once
    per process and reused while no file of its folder changed. ``depends``: another
    loaded state this one is built on (TDX on SGX); a new one means a new read.
    Thread-safe."""
    folder = platform_dir(name, create, home).resolve()
    try:
        with os.scandir(folder) as entries:
            files = tuple(sorted(
                (e.name, st.st_ino, st.st_size, st.st_mode, st.st_mtime_ns, st.st_ctime_ns)
                for e in entries for st in (e.stat(follow_symlinks=False),)))
    except OSError as exc:
        raise corrupt(folder, f"cannot list it: {exc.strerror}") from None
    key = (folder, files, id(depends))
    # the value holds ``depends`` too, so its id cannot be reused while the entry lives
    return _LOADED.get_or_create(key, lambda: (depends, read(folder)))[1]


def _corrupt(folder: Path, why: str) -> SimStateError:
    return SimStateError(f"simulated platform state in {folder} is corrupt ({why}); {RESET_HINT}")


def check_manifest(folder: Path, platform: str,
                   required: Sequence[str] = ()) -> dict[str, bytes]:
    """Read every file the manifest lists, checking its digest; return name -> bytes. A
    manifest that does not list every name in ``required`` is a corrupt state too."""
    try:
        manifest = json.loads((folder / MANIFEST).read_bytes())
    except FileNotFoundError:
        raise _corrupt(folder, f"{MANIFEST} is missing") from None
    except (OSError, ValueError) as exc:
        raise _corrupt(folder, f"{MANIFEST} is unreadable: {exc}") from exc
    if (
        not isinstance(manifest, dict)
        or manifest.get("format") != FORMAT
        or manifest.get("platform") != platform
        or not isinstance(manifest.get("files"), dict)
    ):
        raise _corrupt(folder, f"{MANIFEST} is not a format-{FORMAT} {platform} manifest")
    contents: dict[str, bytes] = {}
    for name, digest in manifest["files"].items():
        path = folder / name
        if "/" in name or name.startswith("."):
            raise _corrupt(folder, f"bad file name {name!r}")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise _corrupt(folder, f"{name}: {exc.strerror or exc}") from exc
        if hashlib.sha256(data).hexdigest() != digest:
            raise _corrupt(folder, f"{name} does not match the manifest")
        contents[name] = data
    missing = [name for name in required if name not in contents]
    if missing:
        raise _corrupt(folder, f"the manifest lacks {', '.join(missing)}")
    return contents


def check_private(folder: Path, name: str) -> None:
    """Refuse a secret file that others can read (like ssh does)."""
    mode = (folder / name).stat().st_mode
    if stat.S_IMODE(mode) & 0o077:
        raise SimStateError(
            f"{folder / name} is readable by others (mode {stat.S_IMODE(mode):o}); "
            f"fix it with chmod 600 or {RESET_HINT}"
        )


def load_private_key(folder: Path, name: str, data: bytes) -> PrivateKeyTypes:
    """Parse a PKCS#8 PEM private key read from the state, checking its mode."""
    check_private(folder, name)
    try:
        return serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise _corrupt(folder, f"{name} is not a private key") from exc


def corrupt(folder: Path, why: str) -> SimStateError:
    """A SimStateError for a folder whose contents do not make sense."""
    return _corrupt(folder, why)


# ------------------------------------------------------------------- whole-home actions


def platforms() -> dict[str, SimState]:
    """Folder name -> the simulator's state hooks, for every registered TEE that has one."""
    return {t.sim_state.folder: t.sim_state for t in registry().tees if t.sim_state}


def read_certificates(folder: str, pattern: str) -> list[x509.Certificate]:
    """The PEM certificates matching ``pattern`` in a platform's folder, if it exists (never
    created here): how a verifier asked to trust the simulators finds their roots
    (:func:`read_published`)."""
    return read_published(folder, pattern, x509.load_pem_x509_certificate)


def read_published(folder: str, pattern: str, parse: Callable[[bytes], Any]) -> list[Any]:
    """``parse`` of each file matching ``pattern`` in a platform's folder, if it exists
    (never created here), skipping files it refuses with ValueError: what a simulator
    publishes for verifiers (roots, public keys).

    Read once per process while nothing changed: every verification of simulated evidence
    asks (a service, thousands of times a second), and listing, reading and parsing the
    files cost as much as the quote's two signature checks. The folder's identity and
    modification time (a ``sim reset`` replaces the folder, a file published into it changes
    it) and each file's are checked on every call: a few ``stat`` calls."""
    directory = sim_home() / folder
    key = (str(directory), pattern, parse)
    seen = _stat_key(directory)
    cached = _read_cache.get(key)
    if cached is not None and seen is not None and cached[0] == seen \
            and all(_stat_key(path) == identity for path, identity in cached[1]):
        return list(cached[2])
    found, files = [], []
    for path in sorted(directory.glob(pattern)):
        identity = _stat_key(path)
        try:
            found.append(parse(path.read_bytes()))
        except (OSError, ValueError):
            continue
        files.append((path, identity))
    if seen is not None:
        _read_cache[key] = (seen, files, found)
    return list(found)


_read_cache: dict[tuple[str, str, Callable[[bytes], Any]],
                  tuple[Any, list[tuple[Path, Any]], list[Any]]] = {}


def _stat_key(path: Path) -> tuple[int, int, int, int] | None:
    try:
        info = path.stat()
    except OSError:
        return None
    return (info.st_dev, info.st_ino, info.st_mtime_ns, info.st_size)


def reset(home: Path | str | None = None) -> None:
    """Delete every platform's state (and leftovers), then create fresh state with new keys."""
    root = ensure_home(home)
    known = platforms()
    for entry in list(root.iterdir()):
        managed = entry.name in known or any(
            entry.name.startswith(f".{name}.") for name in known
        )
        if not managed or not entry.is_dir():
            continue
        # Rename first so no reader ever sees a half-deleted folder.
        doomed = Path(tempfile.mkdtemp(prefix=f".{entry.name.lstrip('.')}.old-", dir=root))
        os.rename(entry, doomed / "x")
        shutil.rmtree(doomed, ignore_errors=True)
    for name, state in known.items():
        platform_dir(name, state.create, root)


def describe(home: Path | str | None = None) -> str:
    """Human-readable account of the state (creating it on first use)."""
    root = ensure_home(home)
    parts = [f"simulated platform state: {root}"]
    for name, state in platforms().items():
        folder = platform_dir(name, state.create, root)
        parts.append(state.describe(folder))
    return "\n\n".join(parts)
