"""The attestation service: certificates for a fleet of keeps (issue 9).

Keeps send a CSR carrying evidence bound to their key and a one-time challenge; the
service verifies it once and issues a short-lived certificate under its own CA carrying the
attestation result, so tenants trust one CA instead of checking every keep themselves.

One concept a module: ``ca`` (the CA key, certificate, issuance, CRL), ``csr`` (the keep's
request and the service's checks of it, sans-I/O), ``result`` (the attestation-result
extension: the EAR claims-set of :mod:`attestcall.ear`), ``attestation`` (a token
request, sans-I/O), ``tokens`` (the EAR token's signing key, JWS and JWKS), ``storage`` and
``migrations`` (the database: challenges, certificates, revocations, deny-list, audit log).
The HTTP application sits on top.
"""
