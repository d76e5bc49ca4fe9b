"""The simulated SGX platform's state: its files, loading and checking them, creating them.

:func:`load_state` reads the simulated platform (under ``sim_home()/sgx``) once per
process: a simulated Intel SGX Root CA -> PCK Platform CA -> PCK certificate chain shaped
like Intel's, the QE attestation key, the CPU secret, the enclave signer and the TCB
levels. Every subject says SIMULATED. :func:`create_state` and :func:`describe_state` are
what the SGX plugin record's ``sim_state`` calls.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from attestcall import simstate
from attestcall.errors import AttestcallError
from attestcall.intel.formats.pck import (
    SGX_TYPE_SCALABLE,
    PckConfiguration,
    PckExtension,
    PckTcb,
)
from attestcall.intel.formats.structs import attributes_bytes
from attestcall.intel.sim.sgx.certs import certificate, pem, years_after
from attestcall.intel.sim.sgx.identity import (
    DEFAULT_XFRM,
    QE_ATTRIBUTE_FLAGS,
    EnclaveIdentity,
    mrsigner_of,
)

PLATFORM = "sgx"

# Files under sim_home()/sgx
ROOT_CERT, ROOT_KEY = "root_ca.pem", "root_ca.key.pem"
PLATFORM_CA_CERT, PLATFORM_CA_KEY = "pck_platform_ca.pem", "pck_platform_ca.key.pem"
PCK_CERT, PCK_KEY = "pck.pem", "pck.key.pem"
TCB_SIGNING_CERT, TCB_SIGNING_KEY = "tcb_signing.pem", "tcb_signing.key.pem"
ATTESTATION_KEY = "qe_attestation.key.pem"
ENCLAVE_SIGNER_KEY = "enclave_signer.key.pem"
ENCLAVE_SIGNER_PUBLIC = "enclave_signer.pub.pem"
CPU_SECRET = "cpu_secret.bin"
PLATFORM_JSON = "platform.json"
TCB_LEVELS_JSON = "tcb_levels.json"
QE_IDENTITY_JSON = "qe_identity.json"
_EC_KEYS = (ROOT_KEY, PLATFORM_CA_KEY, PCK_KEY, TCB_SIGNING_KEY, ATTESTATION_KEY)
_FILES = (ROOT_CERT, ROOT_KEY, PLATFORM_CA_CERT, PLATFORM_CA_KEY, PCK_CERT, PCK_KEY,
          TCB_SIGNING_CERT, TCB_SIGNING_KEY, ATTESTATION_KEY, ENCLAVE_SIGNER_KEY,
          ENCLAVE_SIGNER_PUBLIC, CPU_SECRET, PLATFORM_JSON, TCB_LEVELS_JSON,
          QE_IDENTITY_JSON)  # fmt: skip

# Simulated CRL locations: the shape of Intel's, under a name that never resolves.
SIM_CRL_BASE = "https://sgx-sim.attestcall.invalid"
ROOT_CRL_URL = f"{SIM_CRL_BASE}/IntelSGXRootCA.der"
PLATFORM_CRL_URL = f"{SIM_CRL_BASE}/sgx/certification/v4/pckcrl?ca=platform&encoding=der"

# The simulated platform's TCB (component SVNs as on a recent Xeon; CPUSVN carries them).
SIM_TCB_COMP_SVNS = (11, 11, 2, 2, 255, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0)
SIM_PCE_SVN = 13
SIM_QE_SVN = 8
SIM_FMSPC = bytes.fromhex("00906ED50000")
SIM_PCE_ID = bytes(2)


# ------------------------------------------------------------------------------ the state


@dataclass(frozen=True, eq=False)
class SgxState:
    """The loaded simulated platform. Compared by identity; cached by :func:`load_state`."""

    folder: Path
    root_cert: x509.Certificate
    root_key: ec.EllipticCurvePrivateKey
    platform_ca_cert: x509.Certificate
    platform_ca_key: ec.EllipticCurvePrivateKey
    pck_cert: x509.Certificate
    pck_key: ec.EllipticCurvePrivateKey
    tcb_signing_cert: x509.Certificate
    tcb_signing_key: ec.EllipticCurvePrivateKey
    attestation_key: ec.EllipticCurvePrivateKey
    enclave_signer_public: rsa.RSAPublicKey
    enclave_signer_pem: bytes
    cpu_secret: bytes
    pck_extension: PckExtension
    cpu_svn: bytes
    qe_svn: int
    pce_svn: int
    qe_id: bytes
    qe_identity: EnclaveIdentity
    tcb_levels_json: bytes
    qe_identity_json: bytes
    pck_chain_pem: bytes

    @property
    def fmspc(self) -> bytes:
        return self.pck_extension.fmspc

    @property
    def pce_id(self) -> bytes:
        return self.pck_extension.pce_id

    @functools.cached_property
    def enclave_signer_mrsigner(self) -> bytes:
        return mrsigner_of(self.enclave_signer_public)

    @functools.cached_property
    def enclave_signer_key(self) -> rsa.RSAPrivateKey:
        """The enclave signer's private key, loaded on first use (validating an RSA-3072
        key is slow, and quoting never needs it)."""
        key = simstate.load_private_key(self.folder, ENCLAVE_SIGNER_KEY, self.enclave_signer_pem)
        if not isinstance(key, rsa.RSAPrivateKey) or key.public_key() != self.enclave_signer_public:
            raise simstate.corrupt(self.folder, "the enclave signer key does not match")
        return key


def load_state(home: Path | str | None = None) -> SgxState:
    """The SGX state under ``home`` (default ``sim_home()``), created on first use and
    loaded once per process while its manifest is unchanged (``simstate.load_state``).
    Raises SimStateError for a corrupt or partial state."""
    return simstate.load_state(PLATFORM, create_state, read_state, home)


def read_state(folder: Path) -> SgxState:
    """Load and check the state in ``folder`` (no cache)."""
    files = simstate.check_manifest(folder, PLATFORM, _FILES)
    try:
        keys = {name: simstate.load_private_key(folder, name, files[name])
                for name in _EC_KEYS}  # fmt: skip
        simstate.check_private(folder, CPU_SECRET)
        simstate.check_private(folder, ENCLAVE_SIGNER_KEY)
        signer_public = serialization.load_pem_public_key(files[ENCLAVE_SIGNER_PUBLIC])
        certs = {name: x509.load_pem_x509_certificate(files[name])
                 for name in (ROOT_CERT, PLATFORM_CA_CERT, PCK_CERT, TCB_SIGNING_CERT)}  # fmt: skip
        info = json.loads(files[PLATFORM_JSON])
        qe = info["qe"]
        qe_identity = EnclaveIdentity.from_record(qe)
        pck_extension = PckExtension.from_certificate(certs[PCK_CERT])
        state = SgxState(
            folder=folder,
            root_cert=certs[ROOT_CERT],
            root_key=keys[ROOT_KEY],
            platform_ca_cert=certs[PLATFORM_CA_CERT],
            platform_ca_key=keys[PLATFORM_CA_KEY],
            pck_cert=certs[PCK_CERT],
            pck_key=keys[PCK_KEY],
            tcb_signing_cert=certs[TCB_SIGNING_CERT],
            tcb_signing_key=keys[TCB_SIGNING_KEY],
            attestation_key=keys[ATTESTATION_KEY],
            enclave_signer_public=signer_public,  # type: ignore[arg-type]
            enclave_signer_pem=files[ENCLAVE_SIGNER_KEY],
            cpu_secret=files[CPU_SECRET],
            pck_extension=pck_extension,
            cpu_svn=bytes.fromhex(info["cpu_svn"]),
            qe_svn=info["qe_svn"],
            pce_svn=info["pce_svn"],
            qe_id=bytes.fromhex(info["qe_id"]),
            qe_identity=qe_identity,
            tcb_levels_json=files[TCB_LEVELS_JSON],
            qe_identity_json=files[QE_IDENTITY_JSON],
            pck_chain_pem=b"".join(files[name] for name in (PCK_CERT, PLATFORM_CA_CERT, ROOT_CERT))
            + b"\x00",
        )
    except simstate.SimStateError:
        raise
    except (KeyError, TypeError, ValueError, AttestcallError) as exc:
        raise simstate.corrupt(folder, f"{type(exc).__name__}: {exc}") from exc
    _check_state(state)
    return state


def _check_state(state: SgxState) -> None:
    folder = state.folder
    for name, key in (("root CA", state.root_key), ("PCK Platform CA", state.platform_ca_key),
                      ("PCK", state.pck_key), ("TCB signing", state.tcb_signing_key),
                      ("QE attestation", state.attestation_key)):  # fmt: skip
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            raise simstate.corrupt(folder, f"the {name} key is not ECDSA P-256")
    if not isinstance(state.enclave_signer_public, rsa.RSAPublicKey):
        raise simstate.corrupt(folder, "the enclave signer key is not RSA")
    if len(state.cpu_secret) != 32:
        raise simstate.corrupt(folder, "the CPU secret is not 32 bytes")
    if len(state.cpu_svn) != 16 or len(state.qe_id) != 16:
        raise simstate.corrupt(folder, "CPUSVN and QE ID must be 16 bytes")
    if not all(isinstance(v, int) and 0 <= v <= 0xFFFF for v in (state.qe_svn, state.pce_svn)):
        raise simstate.corrupt(folder, "QE SVN and PCE SVN must be in 0..65535")
    pairs = ((state.root_cert, state.root_key), (state.platform_ca_cert, state.platform_ca_key),
             (state.pck_cert, state.pck_key), (state.tcb_signing_cert, state.tcb_signing_key))
    for cert, key in pairs:
        if cert.public_key() != key.public_key():
            subject = cert.subject.rfc4514_string()
            raise simstate.corrupt(folder, f"{subject} does not match its key")


# ------------------------------------------------------------------------ state creation


def _tcb_levels(extension: PckExtension, created: dt.datetime) -> dict[str, Any]:
    """TCB levels in the shape of Intel's TCB info v3 (issue dates and signature are added
    when collateral is produced)."""
    date = created.strftime("%Y-%m-%dT00:00:00Z")
    current = list(extension.tcb.comp_svns)
    older = [max(0, svn - 1) if i < 2 else svn for i, svn in enumerate(current)]

    def level(svns: list[int], pce_svn: int, status: str, advisories: list[str]) -> dict[str, Any]:
        body: dict[str, Any] = {
            "tcb": {"sgxtcbcomponents": [{"svn": svn} for svn in svns], "pcesvn": pce_svn},
            "tcbDate": date,
            "tcbStatus": status,
        }
        if advisories:
            body["advisoryIDs"] = advisories
        return body

    return {
        "id": "SGX",
        "version": 3,
        "fmspc": extension.fmspc.hex().upper(),
        "pceId": extension.pce_id.hex().upper(),
        "tcbType": 0,
        "tcbEvaluationDataNumber": 1,
        "tcbLevels": [
            level(current, extension.tcb.pce_svn, "UpToDate", []),
            level(older, extension.tcb.pce_svn - 1, "OutOfDate", ["SIMULATED-SA-00001"]),
        ],
    }


_QE_FLAGS_MASK = 0xFFFFFFFFFFFFFFFB  # Intel's QE identity ignores MODE64BIT


def qe_identity_json(
    qe: EnclaveIdentity, created: dt.datetime, identity_id: str = "QE"
) -> dict[str, Any]:
    """A quoting enclave's identity in the shape of Intel's QE identity v2 (unsigned):
    ``identity_id`` "QE" for SGX's QE, "TD_QE" for TDX's."""
    return {
        "id": identity_id,
        "version": 2,
        "tcbEvaluationDataNumber": 1,
        "miscselect": qe.misc_select.to_bytes(4, "little").hex().upper(),
        "miscselectMask": "FFFFFFFF",
        "attributes": attributes_bytes(qe.attribute_flags & _QE_FLAGS_MASK, 0).hex().upper(),
        "attributesMask": attributes_bytes(_QE_FLAGS_MASK, 0).hex().upper(),
        "mrsigner": qe.mrsigner.hex().upper(),
        "isvprodid": qe.isv_prod_id,
        "tcbLevels": [
            {"tcb": {"isvsvn": qe.isv_svn}, "tcbDate": created.strftime("%Y-%m-%dT00:00:00Z"),
             "tcbStatus": "UpToDate"},
        ],
    }  # fmt: skip


def create_state(folder: Path) -> None:
    """Generate a fresh simulated SGX platform into the (private, empty) ``folder``."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    start = now - dt.timedelta(days=1)
    root_end = dt.datetime(2049, 12, 31, 23, 59, 59, tzinfo=dt.UTC)

    def p256() -> ec.EllipticCurvePrivateKey:
        return ec.generate_private_key(ec.SECP256R1())

    root_key, ca_key, pck_key, tcb_key, att_key = p256(), p256(), p256(), p256(), p256()
    signer_key = rsa.generate_private_key(public_exponent=3, key_size=3072)
    root = certificate(subject="Intel SGX Root CA SIMULATED", key=root_key, issuer=None,
                       issuer_key=root_key, not_before=start, not_after=root_end,
                       crl_url=ROOT_CRL_URL, path_length=1, ca=True)  # fmt: skip
    platform_ca = certificate(subject="Intel SGX PCK Platform CA SIMULATED", key=ca_key,
                              issuer=root, issuer_key=root_key, not_before=start,
                              not_after=min(years_after(start, 15), root_end),
                              crl_url=ROOT_CRL_URL, path_length=0, ca=True)  # fmt: skip
    cpu_svn = bytes(SIM_TCB_COMP_SVNS)
    extension = PckExtension(
        ppid=os.urandom(16),
        tcb=PckTcb(SIM_TCB_COMP_SVNS, SIM_PCE_SVN, cpu_svn),
        pce_id=SIM_PCE_ID,
        fmspc=SIM_FMSPC,
        sgx_type=SGX_TYPE_SCALABLE,
        platform_instance_id=os.urandom(16),
        configuration=PckConfiguration(dynamic_platform=True, cached_keys=True, smt_enabled=True),
    )
    pck = certificate(subject="Intel SGX PCK Certificate SIMULATED", key=pck_key,
                      issuer=platform_ca, issuer_key=ca_key, not_before=start,
                      not_after=years_after(start, 7), crl_url=PLATFORM_CRL_URL,
                      path_length=None, ca=False,
                      extra=extension.to_x509_extension())  # fmt: skip
    tcb_signing = certificate(subject="Intel SGX TCB Signing SIMULATED", key=tcb_key,
                              issuer=root, issuer_key=root_key, not_before=start,
                              not_after=years_after(start, 7), crl_url=ROOT_CRL_URL,
                              path_length=None, ca=False)  # fmt: skip
    qe = EnclaveIdentity(
        mrenclave=os.urandom(32),
        mrsigner=os.urandom(32),
        isv_prod_id=1,
        isv_svn=SIM_QE_SVN,
        attribute_flags=QE_ATTRIBUTE_FLAGS,
        xfrm=DEFAULT_XFRM,
    )
    info = {
        "comment": "SIMULATED Intel SGX platform (attestcall); not a real machine",
        "cpu_svn": cpu_svn.hex(),
        "qe_svn": SIM_QE_SVN,
        "pce_svn": SIM_PCE_SVN,
        "qe_id": os.urandom(16).hex(),
        "qe": qe.to_record(),
    }
    for name, key in ((ROOT_KEY, root_key), (PLATFORM_CA_KEY, ca_key), (PCK_KEY, pck_key),
                      (TCB_SIGNING_KEY, tcb_key), (ATTESTATION_KEY, att_key),
                      (ENCLAVE_SIGNER_KEY, signer_key)):  # fmt: skip
        simstate.write_private_key(folder / name, key)
    simstate.write_private(folder / CPU_SECRET, os.urandom(32))
    simstate.write_public(
        folder / ENCLAVE_SIGNER_PUBLIC,
        signer_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    )
    for name, cert in ((ROOT_CERT, root), (PLATFORM_CA_CERT, platform_ca), (PCK_CERT, pck),
                       (TCB_SIGNING_CERT, tcb_signing)):  # fmt: skip
        simstate.write_public(folder / name, pem(cert))

    def dump(value: Any) -> bytes:
        return json.dumps(value, indent=2).encode() + b"\n"

    simstate.write_public(folder / PLATFORM_JSON, dump(info))
    simstate.write_public(folder / TCB_LEVELS_JSON, dump(_tcb_levels(extension, now)))
    simstate.write_public(folder / QE_IDENTITY_JSON, dump(qe_identity_json(qe, now)))
    simstate.write_manifest(folder, PLATFORM, _FILES)


def describe_state(folder: Path) -> str:
    """Human-readable account of the SGX state in ``folder``."""
    state = read_state(folder)
    ext = state.pck_extension
    lines = [f"Intel SGX (simulated): {folder}", "  certificates:"]
    certs = (("root", state.root_cert), ("PCK Platform CA", state.platform_ca_cert),
             ("PCK", state.pck_cert), ("TCB signing", state.tcb_signing_cert))  # fmt: skip
    for label, cert in certs:
        lines.append(
            f"    {label}: {cert.subject.rfc4514_string()}  [ECDSA P-256, "
            f"{cert.not_valid_before_utc:%Y-%m-%d} .. {cert.not_valid_after_utc:%Y-%m-%d}]"
        )
    lines += [
        "  keys: root CA, PCK Platform CA, PCK, TCB signing, QE attestation: ECDSA P-256; "
        f"enclave signer: RSA-{state.enclave_signer_public.key_size} (e="
        f"{state.enclave_signer_public.public_numbers().e}); CPU secret: 32 bytes",
        f"  FMSPC {ext.fmspc.hex().upper()}  PCE-ID {ext.pce_id.hex().upper()}  "
        f"SGX type {ext.sgx_type}  PPID {ext.ppid.hex()}",
        f"  PCK TCB: components {list(ext.tcb.comp_svns)}, PCESVN {ext.tcb.pce_svn}, "
        f"CPUSVN {ext.tcb.cpu_svn.hex()}",
        "  TCB levels:",
    ]
    for level in json.loads(state.tcb_levels_json)["tcbLevels"]:
        svns = [c["svn"] for c in level["tcb"]["sgxtcbcomponents"]]
        pce_svn = level["tcb"]["pcesvn"]
        lines.append(f"    {level['tcbStatus']}: components {svns}, PCESVN {pce_svn}")
    qe = state.qe_identity
    lines += [
        f"  QE identity: MRENCLAVE {qe.mrenclave.hex()}",
        f"               MRSIGNER {qe.mrsigner.hex()}  ISVPRODID {qe.isv_prod_id}  "
        f"ISVSVN {qe.isv_svn}",
        f"  quote header: QE SVN {state.qe_svn}, PCE SVN {state.pce_svn}",
        f"  enclave signer MRSIGNER {state.enclave_signer_mrsigner.hex()}",
    ]
    return "\n".join(lines)
