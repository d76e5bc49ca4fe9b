"""Evidence sources standing in for a platform in front-end tests."""

from __future__ import annotations

import hashlib

from attestcall.abi import PlatformFailure


class FixedSource:
    """Evidence of a fixed size: 8 bytes of b"EVIDENCE", the nonce, then filler derived
    from the nonce, so a test can check that every byte arrived."""

    def __init__(self, technology: int = 2, size: int = 1000, fail: bool = False):
        if size < 72:
            raise ValueError("size must hold the marker and the nonce")
        self.technology = technology
        self.size = size
        self.fail = fail
        self.calls: list[bytes] = []

    def evidence_size(self) -> int:
        return self.size

    def evidence(self, nonce: bytes) -> bytes:
        self.calls.append(nonce)
        if self.fail:
            raise PlatformFailure("simulated platform failure")
        return expected_evidence(nonce, self.size)


def expected_evidence(nonce: bytes, size: int) -> bytes:
    filler = hashlib.shake_256(nonce).digest(size - 72)
    return b"EVIDENCE" + nonce + filler
