"""Where TEEs are registered: a name on the command line → a keep (shim + host).

Adding a TEE means one module for it and one line in ``_OPENERS``; a TEE's module is
imported only when it is used, so the command line starts fast.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any, TextIO

from attestcall.errors import UsageError
from attestcall.keep.keep import Keep
from attestcall.keep.shim import NoneSource


def open_none(payload: bytes, options: Mapping[str, Any]) -> Keep:
    return Keep("none", NoneSource())


# name -> "module:function(payload, options) -> Keep", imported only when that TEE is used
_OPENERS: dict[str, str] = {
    "none": "attestcall.keep.platforms:open_none",
    "sev-sim": "attestcall.keep.sev:open_sev_sim",
    "sgx-sim": "attestcall.keep.sgx:open_sgx_sim",
    "snp-sim": "attestcall.keep.snp:open_snp_sim",
    "tdx-sim": "attestcall.keep.tdx:open_tdx_sim",
    "tsm": "attestcall.keep.real:open_tsm",
    "sev-guest": "attestcall.keep.real:open_sev_guest",
    "gramine": "attestcall.keep.real:open_gramine",
    "efi-secret": "attestcall.keep.real:open_efi_secret",
}

TEE_NAMES = ("auto", *_OPENERS)


def _opener(tee: str) -> Callable[[bytes, Mapping[str, Any]], Keep]:
    module, _, function = _OPENERS[tee].partition(":")
    return getattr(importlib.import_module(module), function)


def detect_hardware() -> str | None:
    """The first usable real interface, probing configfs-tsm, /dev/sev-guest, then
    Gramine's /dev/attestation; None when there is none (see ``attestcall devices``)."""
    from attestcall.keep import real

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
    if tee not in _OPENERS:
        raise UsageError(f"unknown TEE {tee!r}; choose one of {', '.join(TEE_NAMES)}")
    return _opener(tee)(payload, options)
