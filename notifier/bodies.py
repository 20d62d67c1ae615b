"""Request bodies for every HTTP door: bounded, decoded, refused with field and reason."""

from __future__ import annotations

import json
from typing import Any

from fastapi import HTTPException, Request
from fastapi.responses import JSONResponse

from .ingest import InvalidEvent

MAX_BODY_BYTES = 64 * 1024


async def read_body(request: Request) -> bytes:
    """The raw body, or 413 as soon as it grows past the limit, declared or not."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise HTTPException(413, f"body larger than {MAX_BODY_BYTES} bytes")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise HTTPException(413, f"body larger than {MAX_BODY_BYTES} bytes")
    return body


def decode_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidEvent([("body", f"not valid JSON: {exc}")]) from None


def invalid(error: str, errors: list[tuple[str, str]]) -> JSONResponse:
    """422 naming the first bad field and why, with the full list beside it."""
    field, reason = errors[0]
    listed = [{"field": f, "reason": r} for f, r in errors]
    return JSONResponse(
        {"error": error, "field": field, "reason": reason, "errors": listed}, status_code=422
    )
