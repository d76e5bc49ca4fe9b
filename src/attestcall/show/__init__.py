"""``attestcall show``: what a piece of evidence, key or certificate holds, without verifying.

:func:`show` takes the bytes of a file — raw, hex, base64 or PEM (:mod:`.inputs`) — and
returns a tree (:mod:`attestcall.describe`): TEE evidence through the describer each TEE's
plugin record registers (``Tee.describe``, so a new TEE shows its own evidence without a
change here), certificates and certificate requests here (:mod:`.certificates`): a keep's
certificate with the evidence it carries and whether that evidence is bound to its key, an
attestation-service certificate with its result extension, a CSR. :func:`render` makes the
tree an indented text. The ``--json`` schema is the tree itself; the README documents its
top-level keys per ``kind``.

Unrecognised, truncated or malformed input raises :class:`~attestcall.errors.EvidenceError`
with one line that never quotes the input's bytes.
"""

from __future__ import annotations

from typing import Any

from attestcall.describe import Tree
from attestcall.errors import AttestcallError, EvidenceError
from attestcall.show import inputs
from attestcall.show.render import render
from attestcall.tees import registry

__all__ = ["render", "show", "describe_bytes"]


def describe_bytes(data: bytes) -> Tree:
    """The tree of one decoded blob (no encoding layer): TEE evidence or a vendor
    certificate through the registered describers (in technology order), else a certificate
    or CSR; EvidenceError otherwise."""
    from attestcall.show.certificates import describe_x509

    for tee in registry().tees:
        if tee.describe is None:
            continue
        try:
            tree = tee.describe(data)
        except (AttestcallError, ValueError, KeyError, IndexError, OverflowError) as exc:
            what = tee.title or f"{tee.label} evidence"
            raise EvidenceError(f"not a well-formed {what}: {_one_line(exc)}") from None
        if tree is not None:
            return tree
    tree = describe_x509(data)
    if tree is None:
        raise EvidenceError(f"cannot tell what these {len(data)} bytes are (not any of: "
                            f"{', '.join(_known())})")
    return tree


def _known() -> list[str]:
    titles = [t.title for t in registry().tees if t.describe is not None and t.title]
    return [*titles, "X.509 certificate", "PKCS#10 certificate request"]


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def show(data: bytes) -> Tree:
    """The tree of a file's bytes: ``kind``, ``encoding`` (raw, hex, base64, pem) and the
    kind's own keys; a PEM file of several blocks is ``kind`` "bundle" with ``items``."""
    decoded = inputs.decode(data)
    trees: list[Any] = []
    for label, blob in decoded.blobs:
        tree = describe_bytes(blob)
        if label is not None:
            tree = {**tree, "pem_label": label}
        trees.append(tree)
    if len(trees) == 1:
        head = {"kind": trees[0]["kind"], "encoding": decoded.encoding}
        return {**head, **{k: v for k, v in trees[0].items() if k != "kind"}}
    return {"kind": "bundle", "encoding": decoded.encoding, "items": trees}
