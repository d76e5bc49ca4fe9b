"""The identity of a simulated SGX enclave: what EREPORT puts in a REPORT body about it.

MRENCLAVE of a simulated enclave is SHA-256(``b"attestcall-sim MRENCLAVE v1\\0"`` ||
payload bytes): a stand-in for the real page-by-page measurement, distinct per payload.
MRSIGNER is what SGX computes: SHA-256 of the signer's RSA-3072 modulus, little-endian
(the signer key has public exponent 3, as SIGSTRUCT requires).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric import rsa

from attestcall.abi import NONCE_SIZE
from attestcall.intel.formats.structs import (
    ATTR_DEBUG,
    ATTR_INIT,
    ATTR_MODE64BIT,
    ATTR_PROVISIONKEY,
    ReportBody,
    TargetInfo,
    attributes_bytes,
)

if TYPE_CHECKING:
    from attestcall.intel.sim.sgx.state import SgxState

REPORT_DATA_SIZE = NONCE_SIZE  # the nonce goes verbatim into REPORTDATA
DEFAULT_ATTRIBUTE_FLAGS = ATTR_INIT | ATTR_MODE64BIT  # 0x05, DEBUG off
DEFAULT_XFRM = 0xE7
QE_ATTRIBUTE_FLAGS = ATTR_INIT | ATTR_MODE64BIT | ATTR_PROVISIONKEY  # 0x15 as Intel's QE3
_MRENCLAVE_LABEL = b"attestcall-sim MRENCLAVE v1\x00"


@dataclass(frozen=True)
class EnclaveIdentity:
    """What EREPORT puts in a REPORT body about the calling enclave."""

    mrenclave: bytes
    mrsigner: bytes
    isv_prod_id: int = 0
    isv_svn: int = 0
    attribute_flags: int = DEFAULT_ATTRIBUTE_FLAGS
    xfrm: int = DEFAULT_XFRM
    misc_select: int = 0
    config_id: bytes = bytes(64)
    config_svn: int = 0
    isv_ext_prod_id: bytes = bytes(16)
    isv_family_id: bytes = bytes(16)

    def __post_init__(self) -> None:
        # Validate every field once, through the REPORT body's own checks.
        self.report_body(bytes(16), bytes(REPORT_DATA_SIZE))

    @property
    def attributes(self) -> bytes:
        return attributes_bytes(self.attribute_flags, self.xfrm)

    @property
    def debug(self) -> bool:
        return bool(self.attribute_flags & ATTR_DEBUG)

    @classmethod
    def for_payload(cls, payload: bytes, state: SgxState, **overrides: Any) -> EnclaveIdentity:
        """The identity of an enclave built from ``payload`` and signed by the state's signer.

        Keyword overrides replace any field; ``None`` means "keep the default", and
        ``debug=True``/``False`` sets or clears the DEBUG attribute.
        """
        identity = cls(measure_payload(payload), state.enclave_signer_mrsigner)
        return identity.replace(**overrides)

    def replace(self, **overrides: Any) -> EnclaveIdentity:
        """A copy with fields replaced; ``None`` keeps a field, ``debug`` sets or clears
        the DEBUG attribute. Unknown names raise TypeError, bad values SgxFormatError."""
        debug = overrides.pop("debug", None)
        changes = {name: value for name, value in overrides.items() if value is not None}
        if debug is not None:
            flags = changes.get("attribute_flags", self.attribute_flags)
            changes["attribute_flags"] = (flags | ATTR_DEBUG) if debug else (flags & ~ATTR_DEBUG)
        return dataclasses.replace(self, **changes) if changes else self

    def to_record(self) -> dict[str, Any]:
        """The fields the simulators keep on disk for a quoting enclave (JSON-ready)."""
        return {
            "mrenclave": self.mrenclave.hex(),
            "mrsigner": self.mrsigner.hex(),
            "isv_prod_id": self.isv_prod_id,
            "isv_svn": self.isv_svn,
            "attribute_flags": self.attribute_flags,
            "xfrm": self.xfrm,
            "misc_select": self.misc_select,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> EnclaveIdentity:
        """The inverse of :meth:`to_record`."""
        return cls(
            mrenclave=bytes.fromhex(record["mrenclave"]),
            mrsigner=bytes.fromhex(record["mrsigner"]),
            isv_prod_id=record["isv_prod_id"],
            isv_svn=record["isv_svn"],
            attribute_flags=record["attribute_flags"],
            xfrm=record["xfrm"],
            misc_select=record["misc_select"],
        )

    def target_info(self) -> TargetInfo:
        """The TARGETINFO another enclave uses to make a REPORT for this one."""
        return TargetInfo(
            mr_enclave=self.mrenclave,
            attributes=self.attributes,
            config_svn=self.config_svn,
            misc_select=self.misc_select,
            config_id=self.config_id,
        )

    def report_body(self, cpu_svn: bytes, report_data: bytes) -> ReportBody:
        return ReportBody(
            cpu_svn=cpu_svn,
            misc_select=self.misc_select,
            isv_ext_prod_id=self.isv_ext_prod_id,
            attributes=self.attributes,
            mr_enclave=self.mrenclave,
            mr_signer=self.mrsigner,
            config_id=self.config_id,
            isv_prod_id=self.isv_prod_id,
            isv_svn=self.isv_svn,
            config_svn=self.config_svn,
            isv_family_id=self.isv_family_id,
            report_data=report_data,
        )


def measure_payload(payload: bytes) -> bytes:
    """The simulated MRENCLAVE of an enclave running ``payload``."""
    return hashlib.sha256(_MRENCLAVE_LABEL + bytes(payload)).digest()


def mrsigner_of(key: rsa.RSAPublicKey) -> bytes:
    """MRSIGNER: SHA-256 of the signer's modulus as little-endian bytes of the key's size."""
    size = (key.key_size + 7) // 8
    return hashlib.sha256(key.public_numbers().n.to_bytes(size, "little")).digest()
