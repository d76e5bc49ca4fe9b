"""The attestation service: certificates for a fleet of keeps (issue 9)."""
