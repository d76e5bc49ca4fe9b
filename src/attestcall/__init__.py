"""attestcall: one system call, get_attestation (0xEA01), for confidential workloads."""

from attestcall.abi import SYS_GET_ATTESTATION, Technology

__all__ = ["SYS_GET_ATTESTATION", "Technology"]
__version__ = "0.1.0"
