"""Deployment: the keep proves itself in its TLS certificate, the tenant checks it, then
sends a Wasm workload that runs in the keep (docs/design.md section 9).

- :mod:`.cmw`: the RATS CMW record and its X.509 extension;
- :mod:`.keys`: key types and the nonce binding evidence to a public key;
- :mod:`.identity`: the keep's key, evidence and certificate; reading them back;
- :mod:`.protocol`: the wire protocol after the handshake (sans I/O);
- :mod:`.provisioning`: SEV provisioning before TLS, both sides (sans I/O);
- :mod:`.runner`: running a delivered module with streamed output (the Wasm executor);
- :mod:`.server`: ``attestcall keep serve``: the accept loop;
- :mod:`.settings`: the server's settings and statistics;
- :mod:`.connection`: the keep's socket reads and writes under timeouts;
- :mod:`.session`: one tenant's session over TLS, in the keep;
- :mod:`.provision_keep`: SEV provisioning, the keep's transport;
- :mod:`.provision_tenant`: SEV provisioning, the tenant's transport;
- :mod:`.ca_trust`: ``deploy --ca``: a keep certified by the attestation service's CA;
- :mod:`.tenant`: ``attestcall deploy``.
"""

from attestcall.deploy.identity import (
    BindingError,
    CertificateEvidenceError,
    KeepIdentity,
    check_binding,
    evidence_from_certificate,
    make_identity,
)
from attestcall.deploy.protocol import ProtocolError
from attestcall.deploy.server import KeepServer, ServerSettings, serve
from attestcall.deploy.tenant import (
    DeployError,
    DeployRefused,
    KeepConnection,
    KeepFailed,
    KeepTimedOut,
    KeepUnreachable,
    deploy,
    simulated_collateral,
)

__all__ = [
    "BindingError",
    "CertificateEvidenceError",
    "DeployError",
    "DeployRefused",
    "KeepConnection",
    "KeepFailed",
    "KeepIdentity",
    "KeepServer",
    "KeepTimedOut",
    "KeepUnreachable",
    "ProtocolError",
    "ServerSettings",
    "check_binding",
    "deploy",
    "evidence_from_certificate",
    "make_identity",
    "serve",
    "simulated_collateral",
]
