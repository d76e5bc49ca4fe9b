"""The tenant's side: verdicts on SGX and TDX quotes and SEV-SNP reports.

Layers: technology parsers and appraisals live in ``attestcall.intel`` and
``attestcall.amd``; this package holds what they share: the verdict, the policy, the
pinned roots (package data in ``roots/``), the collateral cache and HTTP fetching, and
``verify()`` itself (exported as ``attestcall.verify``)."""
