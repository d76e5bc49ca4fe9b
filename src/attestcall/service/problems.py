"""RFC 9457 problem documents, the one shape of every error the service answers."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from starlette.responses import JSONResponse

from attestcall.errors import StorageError

LOG = logging.getLogger("attestcall.service")

PROBLEM = "application/problem+json"
PROBLEM_BASE = "https://attestcall.invalid/problems/"  # problem types are names, not pages
RETRY_AFTER = 5  # seconds a 503 asks the client to wait


def problem_document(status: int, kind: str, title: str, reasons: list[str]) -> dict[str, Any]:
    """An RFC 9457 problem document with the extension member ``reasons``."""
    return {"type": PROBLEM_BASE + kind, "title": title, "status": status,
            "detail": "; ".join(reasons) if reasons else title, "reasons": reasons}


def problem(status: int, kind: str, title: str, reasons: list[str],
            headers: Mapping[str, str] | None = None) -> JSONResponse:
    """:func:`problem_document` as a response."""
    return JSONResponse(problem_document(status, kind, title, reasons), status_code=status,
                        media_type=PROBLEM, headers=headers)


def storage_unavailable(exc: StorageError) -> JSONResponse:
    """503: the database cannot be reached (logged)."""
    LOG.warning("database unavailable: %s", exc)
    return problem(503, "unavailable", "Service Unavailable",
                   ["the service database is unavailable; try again later"],
                   headers={"Retry-After": str(RETRY_AFTER)})
