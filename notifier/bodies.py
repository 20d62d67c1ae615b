"""Request bodies for every HTTP door: bounded, decoded, refused with field and reason."""

from __future__ import annotations

import json
from typing import Any, TypeVar, cast

from fastapi import HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError

from .ingest import InvalidEvent, field_errors

MAX_BODY_BYTES = 64 * 1024
M = TypeVar("M", bound=BaseModel)


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
    except RecursionError:
        raise InvalidEvent([("body", "not valid JSON: nested too deep")]) from None
    except ValueError as exc:  # bad UTF-8, bad JSON, or a number past Python's digit limit
        raise InvalidEvent([("body", f"not valid JSON: {exc}")]) from None


def validated(model: type[M], body: bytes) -> M:
    """The body as `model`, an empty one meaning its defaults; InvalidEvent says what is wrong."""
    payload = decode_json(body) if body.strip() else None
    try:
        return model() if payload is None else model.model_validate(payload)
    except ValidationError as exc:
        raise InvalidEvent(field_errors(exc)) from None


def invalid(error: str, errors: list[tuple[str, str]]) -> JSONResponse:
    """422 naming the first bad field and why, with the full list beside it."""
    field, reason = errors[0]
    listed = [{"field": f, "reason": r} for f, r in errors]
    return JSONResponse(
        {"error": error, "field": field, "reason": reason, "errors": listed}, status_code=422
    )


class Detail(BaseModel):
    """A refusal worded by the web framework: 401, 403, 404, 409 (a reminder), 413."""

    detail: str


class Refused(BaseModel):
    """A refusal the app words itself: 403 and 503 of Cal.com, 409 of a booking event."""

    error: str
    reason: str


class FieldError(BaseModel):
    field: str
    reason: str


class Invalid(Refused):
    """422: `field` and `reason` are the first of `errors`."""

    field: str
    errors: list[FieldError]


def json_body(model: type[BaseModel], required: bool = True) -> dict[str, Any]:
    """`openapi_extra` documenting the JSON body of a route that reads its body by hand."""
    return {
        "requestBody": {
            "required": required,
            "content": {"application/json": {"schema": schema_of(model)}},
        }
    }


def schema_of(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema with its definitions written in place, to sit inside an
    OpenAPI operation."""
    schema = model.model_json_schema()
    return cast(dict[str, Any], _inlined(schema, schema.pop("$defs", {})))


def _inlined(schema: Any, defs: dict[str, Any]) -> Any:
    # The operation's schema sits inside the OpenAPI document: "#/$defs/…" would not resolve.
    if isinstance(schema, list):
        return [_inlined(s, defs) for s in schema]
    if not isinstance(schema, dict):
        return schema
    if "$ref" in schema:
        return _inlined(defs[schema["$ref"].rsplit("/", 1)[-1]], defs)
    return {key: _inlined(value, defs) for key, value in schema.items()}


def refusal(model: type[BaseModel], description: str) -> dict[str, Any]:
    """One entry of a route's OpenAPI `responses`."""
    return {"model": model, "description": description}


NO_KEY = refusal(Detail, "no API key, or a wrong one")
TOO_LARGE = refusal(Detail, f"the body is larger than {MAX_BODY_BYTES} bytes")
UNPROCESSABLE = refusal(Invalid, "a malformed request: the field, and why")
