"""The waitlist through the API: the booking system puts a patient on it (and takes them off),
with the key it sends events with (scope `events`)."""

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from ..bodies import TOO_LARGE, Detail, Invalid, decode_json, invalid, json_body, read_body, refusal
from ..deps import Rt
from ..ingest import ID_PATTERN, ID_RULE, InvalidEvent
from ..runtime import Runtime
from ..waitlist_entries import WaitlistIn, add, entry_json, parse_entry, remove_by_id
from .api import KEYED
from .auth import Sender

router = APIRouter()

EntryId = Annotated[str, Path(pattern=ID_PATTERN, description=ID_RULE)]


@router.post(
    "/v1/waitlist",
    status_code=201,
    responses={
        **KEYED,
        200: {"description": "the same `id` again: the entry as it stands, nothing changed"},
        413: TOO_LARGE,
        422: refusal(Invalid, "a bad entry: the field, and why; nothing is stored"),
    },
    openapi_extra=json_body(WaitlistIn),
)
async def post_waitlist(request: Request, rt: Rt, _: Sender) -> JSONResponse:
    try:
        payload = decode_json(await read_body(request))
    except InvalidEvent as exc:
        return invalid("invalid_entry", exc.errors)
    return await run_in_threadpool(_added, rt, payload)


def _added(rt: Runtime, payload: Any) -> JSONResponse:
    try:
        given = parse_entry(payload, rt.clinic)
    except InvalidEvent as exc:
        return invalid("invalid_entry", exc.errors)
    with rt.sessions() as s:
        entry, new = add(s, given, "api", rt.clock())
        s.commit()
        return JSONResponse(entry_json(entry), status_code=201 if new else 200)


@router.delete(
    "/v1/waitlist/{entry_id}",
    responses={**KEYED, 404: refusal(Detail, "no waitlist entry with this id")},
)
def delete_waitlist(entry_id: EntryId, rt: Rt, _: Sender) -> dict[str, Any]:
    with rt.sessions() as s:
        entry = remove_by_id(s, entry_id, rt.clock())
        if entry is None:
            raise HTTPException(404, f"no waitlist entry {entry_id!r}")
        s.commit()
        return entry_json(entry)
