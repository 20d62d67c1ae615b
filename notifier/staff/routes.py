"""The dashboard's pages. `create_app` mounts `router` under /staff; every path here is
relative to that.

Reading pages are GETs; every button is a POST form carrying the session's CSRF token and ends
in a redirect to a page that shows what happened (post/redirect/get: a reload never re-sends).
Signing in and out, and the dependencies that check both, are in signin.py.
"""

import re
import secrets
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from ..clinic import ChannelName
from ..deps import Db, Rt
from ..ingest import ID_PATTERN
from ..remind import CannotRemind, RemindedRecently, remind
from ..reminder_outcome import textable
from ..runtime import Runtime
from ..stats import stats
from ..track import is_opted_out
from ..waitlist import DAYS
from . import (
    actions,
    board,
    conversations,
    desk,
    search,
    second_factor,
    sessions,
    signin,
    trail,
    waitlist_desk,
)
from .models import StaffSession
from .pages import clock, templates
from .sessions import Flash
from .signin import Posted, Staff
from .timeline import UnknownAppointment, timeline

MAX_DAYS = 14
# Row ids in URLs: PostgreSQL's bigint ends at 2**63 - 1, and a larger number must not reach it.
RowId = Annotated[int, Path(ge=1, lt=2**63)]
AppointmentId = Annotated[str, Path(pattern=ID_PATTERN)]
PatientId = Annotated[str, Path(pattern=ID_PATTERN)]

router = APIRouter(include_in_schema=False)
router.include_router(signin.router)
router.include_router(second_factor.router)


@router.post("/location", name="staff_location")
def choose_location(request: Request, rt: Rt, s: Db, staff: Staff, form: Posted) -> Response:
    chosen = rt.clinic.location(str(form.get("location", "")))
    staff.location_id = chosen.id if chosen else None
    s.commit()
    return _back(request, form, "staff_board")


@router.get("", name="staff_board")
@router.get("/")
def day_board(
    request: Request, rt: Rt, s: Db, staff: Staff, days: int = 3, show: str = ""
) -> Response:
    days = min(max(days, 1), MAX_DAYS)
    now = rt.clock()
    if show == "unconfirmed":
        listed = board.unconfirmed_soon(s, rt.clinic, staff.location_id, now)
    else:
        listed = board.days_ahead(s, rt.clinic, staff.location_id, now, days)
    texts = textable(s, rt.clinic, [v.appointment for d in listed for v in d.visits], now)
    return _render(
        request, rt, s, staff, "board.html", days=listed, span=days, show=show, textable=texts
    )


@router.get("/appointments/{appointment_id}", name="staff_appointment")
def appointment_page(
    request: Request, rt: Rt, s: Db, staff: Staff, appointment_id: str
) -> Response:
    trail.staff_did(request, rt, s, staff, "appointment.view", f"appointment:{appointment_id}")
    try:
        plan = timeline(rt, s, appointment_id, rt.clock())
    except UnknownAppointment as exc:
        return _render(request, rt, s, staff, "missing.html", 404, reason=str(exc))
    opted_out = is_opted_out(s, plan.appointment.patient.phone)
    at_desk = desk.panel(s, rt.clinic, plan.appointment, rt.clock())
    return _render(
        request, rt, s, staff, "appointment.html", plan=plan, opted_out=opted_out, desk=at_desk
    )


@router.post("/appointments/{appointment_id}/visit", name="staff_visit")
def visit_action(
    request: Request,
    rt: Rt,
    s: Db,
    staff: Staff,
    form: Posted,
    appointment_id: AppointmentId,
    action: Annotated[Literal["confirm", "cancel", "no_show", "complete"], Form()],
    token: Annotated[str, Form(max_length=64)] = "",
    ended: Annotated[str, Form(max_length=40)] = "",
) -> Response:
    try:
        done = desk.act(
            s, rt.clinic, appointment_id, action, token, staff.user.email, rt.clock(), ended
        )
    except actions.Refused as exc:
        sessions.set_flash(s, staff, "error", str(exc))
        outcome = "refused"
    else:
        sessions.set_flash(s, staff, "ok", done.text)
        outcome = "ok"
    subject = f"appointment:{appointment_id}"
    trail.staff_did(request, rt, s, staff, f"visit.{action}", subject, outcome)
    return _back(request, form, "staff_appointment", appointment_id=appointment_id)


@router.post("/appointments/{appointment_id}/undo/{action_id}", name="staff_undo")
def undo_action(
    request: Request,
    rt: Rt,
    s: Db,
    staff: Staff,
    form: Posted,
    appointment_id: AppointmentId,
    action_id: RowId,
    token: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    try:
        done = desk.undo(
            s, rt.clinic, appointment_id, action_id, token, staff.user.email, rt.clock()
        )
    except actions.Refused as exc:
        sessions.set_flash(s, staff, "error", str(exc))
        outcome = "refused"
    else:
        sessions.set_flash(s, staff, "ok", done.text)
        outcome = "ok"
    subject = f"appointment:{appointment_id}"
    trail.staff_did(request, rt, s, staff, "visit.undo", subject, outcome)
    return _back(request, form, "staff_appointment", appointment_id=appointment_id)


@router.get("/search", name="staff_search")
def search_page(request: Request, rt: Rt, s: Db, staff: Staff, q: str = "") -> Response:
    trail.staff_did(request, rt, s, staff, "patient.search")
    results = search.find(s, q)
    return _render(request, rt, s, staff, "search.html", results=results)


@router.post("/appointments/{appointment_id}/remind", name="staff_remind")
def remind_now(
    request: Request,
    rt: Rt,
    s: Db,
    staff: Staff,
    form: Posted,
    appointment_id: AppointmentId,
    channel: Annotated[ChannelName, Form()],
) -> Response:
    outcome = _reminded(rt, s, appointment_id, channel, staff.user.email)
    trail.staff_did(
        request,
        rt,
        s,
        staff,
        "reminder",
        f"appointment:{appointment_id}",
        outcome.level,
        f"{channel}: {outcome.text}",
    )
    sessions.set_flash(s, staff, outcome.level, outcome.text)
    return _back(request, form, "staff_appointment", appointment_id=appointment_id)


@router.get("/inbox", name="staff_inbox")
def inbox_page(request: Request, staff: Staff) -> Response:
    """The inbox became the worklist; old bookmarks land there."""
    return RedirectResponse(signin.path_to(request, "staff_worklist"), 303)


@router.get("/worklist", name="staff_worklist")
def worklist_page(request: Request, rt: Rt, s: Db, staff: Staff) -> Response:
    trail.staff_did(request, rt, s, staff, "worklist.view")
    items = conversations.worklist(s, rt.clinic, staff.location_id)
    handled = board.recently_handled(s, rt.clinic, staff.location_id)
    unread = conversations.unread(s, rt.clinic)
    return _render(
        request, rt, s, staff, "worklist.html",
        items=items, handled=handled, unread=unread, new_form_id=_form_id,
    )  # fmt: skip


@router.post("/inbox/{message_id}/handled", name="staff_handled")
def handled(
    request: Request, rt: Rt, s: Db, staff: Staff, form: Posted, message_id: RowId
) -> Response:
    try:
        actions.mark_handled(s, message_id, staff.user.email, rt.clock())
    except actions.Refused as exc:
        sessions.set_flash(s, staff, "error", str(exc))
    trail.staff_did(request, rt, s, staff, "reply.handled", f"reply:{message_id}")
    return _back(request, form, "staff_worklist")


@router.post("/failed/{notification_id}/settle", name="staff_settle")
def settle(
    request: Request, rt: Rt, s: Db, staff: Staff, form: Posted, notification_id: RowId
) -> Response:
    if not conversations.settle_failure(s, notification_id, staff.user.email, rt.clock()):
        sessions.set_flash(s, staff, "error", "Someone took care of this message already.")
    subject = f"notification:{notification_id}"
    trail.staff_did(request, rt, s, staff, "failure.settled", subject)
    return _back(request, form, "staff_worklist")


@router.get("/patients/{patient_id}/conversation", name="staff_thread")
def thread_page(request: Request, rt: Rt, s: Db, staff: Staff, patient_id: str) -> Response:
    shown = conversations.thread(s, rt.clinic, patient_id, rt.clock())
    if shown is None:
        return _render(request, rt, s, staff, "missing.html", 404, reason="No such patient.")
    trail.staff_did(request, rt, s, staff, "conversation.view", f"patient:{patient_id}")
    return _render(request, rt, s, staff, "thread.html", thread=shown, form_id=_form_id())


@router.post("/patients/{patient_id}/messages", name="staff_send")
def send_text(
    request: Request, rt: Rt, s: Db, staff: Staff, form: Posted, patient_id: PatientId
) -> Response:
    outcome = _answered(rt, s, patient_id, form, staff.user.email)
    sessions.set_flash(s, staff, outcome.level, outcome.text)
    subject = f"patient:{patient_id}"
    trail.staff_did(request, rt, s, staff, "message.sent", subject, outcome.level)
    return _back(request, form, "staff_thread", patient_id=patient_id)


@router.get("/opt-outs", name="staff_opt_outs")
def opt_outs_page(request: Request, rt: Rt, s: Db, staff: Staff) -> Response:
    listed = board.opt_outs(s, rt.clinic, staff.location_id)
    emails = board.email_opt_outs(s)
    return _render(request, rt, s, staff, "opt_outs.html", opt_outs=listed, email_opt_outs=emails)


@router.get("/failed", name="staff_failed")
def failed_page(request: Request, rt: Rt, s: Db, staff: Staff) -> Response:
    listed = board.failures(s, rt.clinic, staff.location_id)
    return _render(request, rt, s, staff, "failed.html", failures=listed)


@router.post("/failed/{notification_id}/retry", name="staff_retry")
def retry(
    request: Request, rt: Rt, s: Db, staff: Staff, form: Posted, notification_id: RowId
) -> Response:
    try:
        actions.retry(s, notification_id, staff.user.email, rt.clock())
    except actions.Refused as exc:
        sessions.set_flash(s, staff, "error", str(exc))
    else:
        sessions.set_flash(s, staff, "ok", "Retrying: it goes out again within seconds.")
    trail.staff_did(request, rt, s, staff, "retry", f"notification:{notification_id}")
    return _back(request, form, "staff_failed")


@router.get("/stats", name="staff_stats")
def stats_page(request: Request, rt: Rt, s: Db, staff: Staff) -> Response:
    numbers = stats(s, rt.clinic, rt.clock())
    shown = [loc for loc in numbers["locations"] if staff.location_id in (None, loc["id"])]
    return _render(request, rt, s, staff, "stats.html", stats=shown)


def _render(
    request: Request,
    rt: Runtime,
    s: Session,
    staff: StaffSession,
    name: str,
    status: int = 200,
    **context: Any,
) -> HTMLResponse:
    now = rt.clock()
    common = {
        "staff": staff,
        "practice": rt.clinic.practice.name,
        "locations": rt.clinic.locations,
        "scope": rt.clinic.location(staff.location_id or ""),
        "counts": board.counts(s, rt.clinic, staff.location_id, now),
        "worklist_count": conversations.worklist_count(s, rt.clinic, staff.location_id),
        "flash": sessions.pop_flash(s, staff),
        "now": now,
        "zone": board.in_scope(rt.clinic, staff.location_id)[0].zone,
        "treatments": {t.id: t.name for t in rt.clinic.treatments},
    }
    return templates(rt).TemplateResponse(request, name, common | context, status_code=status)


def _reminded(
    rt: Runtime, s: Session, appointment_id: str, channel: ChannelName, email: str
) -> Flash:
    name = "SMS" if channel == "sms" else "email"
    try:
        result = remind(s, rt.clinic, appointment_id, [channel], email, rt.clock())
    except RemindedRecently as exc:
        return Flash("error", f"Not sent again: {exc.staff} sent an {name} reminder {exc.ago}.")
    except CannotRemind as exc:
        return Flash("error", f"No reminder: {exc}.")
    said, title = result.outcomes[channel], name.capitalize() if channel == "email" else name
    if not result.created:
        return Flash("error", f"{title} reminder {said.text}.")
    if said.result == "held":
        return Flash("ok", f"{title} reminder {said.text}.")
    return Flash("ok", f"{title} reminder sent: it goes out within seconds.")


def _form_id() -> str:
    # Kept as the message's slot: the same form posted twice sends one text.
    return secrets.token_urlsafe(18)


def _answered(rt: Runtime, s: Session, patient_id: str, form: FormData, email: str) -> Flash:
    form_id = str(form.get("form_id", ""))
    if not re.fullmatch(conversations.FORM_ID, form_id):
        return Flash("error", "This form is out of date: reload the page and write again.")
    reply = str(form.get("reply_id", ""))
    try:
        answered = conversations.answer(
            s, rt.clinic, patient_id, str(form.get("text", "")), email, form_id, rt.clock(),
            send_now=form.get("send_now") == "1",
            reply_id=int(reply) if reply.isdigit() and len(reply) < 19 else None,
        )  # fmt: skip
    except conversations.CannotText as exc:
        return Flash("error", str(exc))
    if answered.state == "again":
        return Flash("ok", "Already sent: that message goes out once, not twice.")
    if answered.state == "held":
        at = clock(answered.due_at, answered.zone)
        return Flash("ok", f"Held until {at} (quiet hours): it goes out then.")
    return Flash("ok", "Sent: your text goes out within seconds.")


def _back(request: Request, form: FormData, name: str, **params: str) -> Response:
    target = signin.local(str(form.get("back", ""))) or signin.path_to(request, name, **params)
    return RedirectResponse(target, 303)


@router.get("/waitlist", name="staff_waitlist")
def waitlist_page(request: Request, rt: Rt, s: Db, staff: Staff) -> Response:
    trail.staff_did(request, rt, s, staff, "waitlist.view")
    shown = waitlist_desk.page(s, rt.clinic, staff.location_id)
    return _render(request, rt, s, staff, "waitlist.html", waitlist=shown, days=DAYS)


@router.post("/waitlist", name="staff_waitlist_add")
def waitlist_add(request: Request, rt: Rt, s: Db, staff: Staff, form: Posted) -> Response:
    try:
        entry = waitlist_desk.add_from_form(s, rt.clinic, form, staff.user.email, rt.clock())
    except waitlist_desk.Refused as exc:
        sessions.set_flash(s, staff, "error", str(exc))
    else:
        sessions.set_flash(s, staff, "ok", "On the waitlist: offers go out as visits free up.")
        trail.staff_did(request, rt, s, staff, "waitlist.add", f"patient:{entry.patient_id}")
    return _back(request, form, "staff_waitlist")


@router.post("/waitlist/{entry_id}/remove", name="staff_waitlist_remove")
def waitlist_remove(
    request: Request, rt: Rt, s: Db, staff: Staff, form: Posted, entry_id: RowId
) -> Response:
    if not waitlist_desk.remove(s, entry_id, rt.clock()):
        sessions.set_flash(s, staff, "error", "Not on the waitlist any more.")
    trail.staff_did(request, rt, s, staff, "waitlist.remove", f"waitlist:{entry_id}")
    return _back(request, form, "staff_waitlist")


@router.post("/waitlist/slots/{slot_id}/booked", name="staff_slot_booked")
def slot_booked(
    request: Request, rt: Rt, s: Db, staff: Staff, form: Posted, slot_id: RowId
) -> Response:
    if not waitlist_desk.mark_booked(s, slot_id, staff.user.email, rt.clock()):
        sessions.set_flash(s, staff, "error", "Someone marked this slot booked already.")
    trail.staff_did(request, rt, s, staff, "waitlist.booked", f"waitlist_slot:{slot_id}")
    return _back(request, form, "staff_worklist")
