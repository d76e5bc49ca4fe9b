"""Where TEEs are registered: a name on the command line → a keep (shim + host).

Adding a TEE means one module for it and one line in ``_OPENERS``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, TextIO

from attestcall.errors import UsageError
from attestcall.keep import real
from attestcall.keep.keep import Keep
from attestcall.keep.sgx import open_sgx_sim
from attestcall.keep.shim import NoneSource
from attestcall.keep.snp import open_snp_sim
from attestcall.keep.tdx import open_tdx_sim


def _open_none(payload: bytes, options: Mapping[str, Any]) -> Keep:
    return Keep("none", NoneSource())


_OPENERS: dict[str, Callable[[bytes, Mapping[str, Any]], Keep]] = {
    "none": _open_none,
    "sgx-sim": open_sgx_sim,
    "snp-sim": open_snp_sim,
    "tdx-sim": open_tdx_sim,
    real.TSM: partial(real.open_real, real.TSM),
    real.SEV_GUEST: partial(real.open_real, real.SEV_GUEST),
    real.GRAMINE: partial(real.open_real, real.GRAMINE),
}

TEE_NAMES = ("auto", *_OPENERS)


def detect_hardware() -> str | None:
    """The first usable real interface, probing configfs-tsm, /dev/sev-guest, then
    Gramine's /dev/attestation; None when there is none (see ``attestcall devices``)."""
    return real.detect()


def resolve_tee(requested: str, stderr: TextIO = sys.stderr) -> str:
    """Turn ``auto`` into a concrete TEE name, saying on stderr when it falls back to none."""
    if requested != "auto":
        if requested not in _OPENERS:
            raise UsageError(f"unknown TEE {requested!r}; choose one of {', '.join(TEE_NAMES)}")
        return requested
    found = detect_hardware()
    if found is None:
        print("attestcall: no TEE hardware found; using --tee none (technology 0)", file=stderr)
        return "none"
    return found


def open_keep(tee: str, payload: bytes = b"", **options: Any) -> Keep:
    """Start a keep for ``tee`` (a concrete name, see resolve_tee) measuring ``payload``.

    Options: ``identity`` (dict of enclave-identity overrides for SGX), ``timeout``
    (seconds the shim waits for the host)."""
    try:
        opener = _OPENERS[tee]
    except KeyError:
        raise UsageError(f"unknown TEE {tee!r}; choose one of {', '.join(TEE_NAMES)}") from None
    return opener(payload, options)
