"""Opening a keep by name: the registry's backends (simulators and real interfaces), and
``auto``. No TEE is named here: each one's keeps come from its plugin record
(:mod:`attestcall.tees`)."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TextIO

from attestcall.errors import UsageError
from attestcall.tees import OpenedKeep, registry

if TYPE_CHECKING:
    from attestcall.keep.keep import Keep

NONE = "none"


def open_none(payload: bytes, options: Mapping[str, Any], services: object) -> OpenedKeep:
    """The keep outside any TEE: technology 0, empty evidence (the ``none`` record's)."""
    from attestcall.keep.shim import NoneSource

    return OpenedKeep(NoneSource())


def tee_names() -> list[str]:
    """What ``--tee`` accepts: ``auto`` and every registered keep."""
    return ["auto", *registry().backend_names()]


def detect_hardware(options: Mapping[str, Any] | None = None) -> str | None:
    """The first usable real interface in probing order; None when there is none (see
    ``attestcall devices``)."""
    from attestcall.keep import real

    return real.detect(options)


def resolve_tee(requested: str, stderr: TextIO = sys.stderr) -> str:
    """Turn ``auto`` into a concrete keep name, saying on stderr when it falls back to none."""
    if requested != "auto":
        if registry().backend(requested) is None:
            raise UsageError(f"unknown TEE {requested!r}; choose one of "
                             f"{', '.join(tee_names())}")
        return requested
    found = detect_hardware()
    if found is None:
        print("attestcall: no TEE hardware found; using --tee none (technology 0)", file=stderr)
        return NONE
    return found


def open_keep(tee: str, payload: bytes = b"", **options: Any) -> Keep:
    """Start the keep ``tee`` (a concrete name, see resolve_tee) measuring ``payload``.

    Options are the backend's (``attestcall run --help`` lists the simulators'), plus
    ``timeout``: seconds the shim waits for the host."""
    from attestcall.keep.keep import Keep, KeepServices  # the host machinery, when needed
    from attestcall.keep.shim import DEFAULT_TIMEOUT

    found = registry().backend(tee)
    if found is None:
        raise UsageError(f"unknown TEE {tee!r}; choose one of {', '.join(tee_names())}")
    services = KeepServices(options.get("timeout") or DEFAULT_TIMEOUT)
    try:
        opened = found[1].opener(payload, options, services)
    except BaseException:
        services.stop()
        raise
    return Keep(tee, opened.source, services.process, opened.details, opened.provisioner)
