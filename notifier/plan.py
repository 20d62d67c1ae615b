"""The timing policy: which notifications an appointment should have, and when.

A pure function of its inputs: no database, no clock, no provider. The same inputs always give
the same plan, which is what lets a replayed event change nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from .budget import reminder_moot
from .clinic import ChannelName, Policy, QuietHours, Treatment


@dataclass(frozen=True)
class Visit:
    """An appointment as the policy sees it. All times are aware."""

    status: str  # booked | cancelled | completed | no_show
    start: datetime
    end: datetime
    booked_at: datetime  # when the current start time was set
    cancelled_at: datetime | None = None
    id: str = ""  # orders a patient's visits that start at the same time
    no_show_at: datetime | None = None  # when we learned the patient did not come
    rebooked: bool = False  # the patient has a booked visit ahead


@dataclass(frozen=True)
class Recipient:
    """What the policy needs of a patient: how to reach them, may we, and their clock."""

    zone: ZoneInfo
    sms: bool  # has a mobile number and consented to SMS
    email: bool  # has an address and consented to email
    marketing: bool
    # Wanted texts, but the number cannot take them (a landline): what would be texted is emailed.
    texts_by_email: bool = False


@dataclass(frozen=True)
class Planned:
    kind: str
    channel: ChannelName
    slot: str
    due_at: datetime
    expires_at: datetime  # past this, sending it would be useless
    ask_confirm: bool = False

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.kind, self.channel, self.slot)


@dataclass(frozen=True)
class Skipped:
    """A message the policy would send but for the message budget, and why."""

    kind: str
    slot: str
    due_at: datetime
    reason: str


def plan(
    visit: Visit,
    recipient: Recipient,
    treatment: Treatment,
    policy: Policy,
    now: datetime,
    others: tuple[Visit, ...] = (),
) -> list[Planned]:
    """Every notification the appointment should have, less those already useless at `now`.
    `others` are the patient's other appointments, whose same-day reminders this one may share."""
    return plan_with_skips(visit, recipient, treatment, policy, now, others)[0]


def plan_with_skips(
    visit: Visit,
    recipient: Recipient,
    treatment: Treatment,
    policy: Policy,
    now: datetime,
    others: tuple[Visit, ...] = (),
) -> tuple[list[Planned], list[Skipped]]:
    """The plan, and the messages the budget left out of it (for the staff timeline)."""
    skipped: list[Skipped] = []
    if visit.status == "booked":
        wanted = _booked(visit, recipient, policy, others, skipped)
        wanted += _after_visit(visit, recipient, treatment, policy)
    elif visit.status == "completed":
        wanted = _after_visit(visit, recipient, treatment, policy)
    elif visit.status == "cancelled":
        wanted = _cancelled(visit, recipient)
    else:  # no_show: no aftercare for a visit that did not happen, but a "we missed you"
        wanted = _missed(visit, recipient, policy)
    placed = [_outside_quiet_hours(p, policy.quiet_hours, recipient.zone) for p in wanted]
    kept = [p for p in placed if p.due_at < p.expires_at and p.expires_at > now]
    return kept, [s for s in skipped if s.due_at < visit.start and visit.start > now]


def _booked(
    visit: Visit,
    recipient: Recipient,
    policy: Policy,
    others: tuple[Visit, ...],
    skipped: list[Skipped],
) -> list[Planned]:
    # The confirmation's slot is the start time, so a reschedule brings a fresh "your new time is".
    at = visit.start.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")
    planned = [
        Planned("confirmation", channel, at, visit.booked_at, visit.start)
        for channel in _reachable(("sms", "email"), recipient)
    ]
    # When the confirmation reaches the patient: by text, not before quiet hours end.
    confirmed_at = visit.booked_at
    if recipient.sms:
        confirmed_at = next_allowed(visit.booked_at, policy.quiet_hours, recipient.zone)
    for rule in policy.reminders:
        due = visit.start - timedelta(hours=rule.hours_before)
        if due < visit.booked_at:  # booked inside the reminder's window: it would be moot
            continue
        slot = f"{rule.hours_before:g}h"
        placed = _placed(due, recipient, policy)
        why = reminder_moot(rule.hours_before, placed, confirmed_at, policy)
        if why is None and policy.merge_same_day_reminders:
            why = _merged_away(visit, others, rule.hours_before, recipient.zone)
        if why is not None:
            skipped.append(Skipped("reminder", slot, due, why))
            continue
        planned += [
            Planned("reminder", channel, slot, due, visit.start, ask_confirm=rule.ask_confirm)
            for channel in _reachable(rule.channels, recipient)
        ]
    return planned


def _after_visit(
    visit: Visit, recipient: Recipient, treatment: Treatment, policy: Policy
) -> list[Planned]:
    due = visit.end + timedelta(minutes=treatment.aftercare_delay_minutes)
    # Aftercare tips are worth sending while the patient should still be careful.
    useful_until = max(visit.end + timedelta(hours=treatment.avoid_hours), due + timedelta(hours=1))
    planned = [
        Planned("aftercare", channel, "", due, useful_until)
        for channel in _reachable(("sms", "email"), recipient)
    ]
    if treatment.rebook_after_days and recipient.marketing:
        nudge = visit.end + timedelta(days=treatment.rebook_after_days)
        channels = _reachable(policy.rebook_channels, recipient)[:1]
        planned += [Planned("rebook", c, "", nudge, nudge + timedelta(days=7)) for c in channels]
    return planned


def _cancelled(visit: Visit, recipient: Recipient) -> list[Planned]:
    if visit.cancelled_at is None:
        return []
    # By SMS, and by email too: the email's calendar file takes the visit out of the
    # patient's calendar (METHOD:CANCEL).
    channels = _reachable(("sms", "email"), recipient)
    return [Planned("cancellation", c, "", visit.cancelled_at, visit.start) for c in channels]


def _placed(due: datetime, recipient: Recipient, policy: Policy) -> datetime:
    """When a message due at `due` reaches the patient: a text waits out quiet hours."""
    if not recipient.sms:
        return due
    return next_allowed(due, policy.quiet_hours, recipient.zone)


def same_day_groups(
    visit: Visit, others: tuple[Visit, ...], hours_before: float, zone: ZoneInfo
) -> list[list[Visit]]:
    """The patient's booked visits on `visit`'s day, grouped by the reminder they share: a
    visit joins the group before it when its own reminder would come before that group's
    first visit has begun. The first visit of each group carries the group's reminder."""
    day = visit.start.astimezone(zone).date()
    visits = [visit, *(o for o in others if o.status == "booked" and o.id != visit.id)]
    visits = sorted(
        (v for v in visits if v.start.astimezone(zone).date() == day), key=lambda v: (v.start, v.id)
    )
    groups: list[list[Visit]] = []
    for v in visits:
        if groups and v.start - timedelta(hours=hours_before) < groups[-1][0].start:
            groups[-1].append(v)
        else:
            groups.append([v])
    return groups


def _merged_away(
    visit: Visit, others: tuple[Visit, ...], hours_before: float, zone: ZoneInfo
) -> str | None:
    for group in same_day_groups(visit, others, hours_before, zone):
        if visit in group[1:]:
            first = group[0].start.astimezone(zone)
            return f"merged into the reminder for the visit at {first:%-I:%M %p}"
    return None


# A "we missed you" still makes sense for a couple of days; later it reads as an afterthought.
MISSED_USEFUL_FOR = timedelta(days=2)


def _missed(visit: Visit, recipient: Recipient, policy: Policy) -> list[Planned]:
    # Not marketing: it is about the visit the patient booked and missed, so it needs the
    # channel's consent only. A patient who has booked again needs no nudge.
    hours = policy.no_show_recovery_hours
    if visit.no_show_at is None or visit.rebooked or not hours:
        return []
    due = visit.no_show_at + timedelta(hours=hours)
    channels = _reachable(("sms", "email"), recipient)[:1]
    return [Planned("no_show_recovery", c, "", due, due + MISSED_USEFUL_FOR) for c in channels]


def _reachable(channels: tuple[ChannelName, ...], recipient: Recipient) -> list[ChannelName]:
    if recipient.texts_by_email:
        channels = tuple(dict.fromkeys("email" if c == "sms" else c for c in channels))
    allowed = {"sms": recipient.sms, "email": recipient.email}
    return [c for c in channels if allowed[c]]


def in_quiet_hours(moment: datetime, quiet: QuietHours, zone: ZoneInfo) -> bool:
    local = moment.astimezone(zone).time()
    if quiet.start <= quiet.end:
        return quiet.start <= local < quiet.end
    return local >= quiet.start or local < quiet.end


def next_allowed(moment: datetime, quiet: QuietHours, zone: ZoneInfo) -> datetime:
    """The first moment at or after `moment` when an SMS may go out, by the wall clock of `zone`."""
    if not in_quiet_hours(moment, quiet, zone):
        return moment
    local = moment.astimezone(zone)
    day = local.date()
    if quiet.start > quiet.end and local.time() >= quiet.start:
        day += timedelta(days=1)
    # Built from the wall clock, not by adding hours, so a DST change in the night is honoured.
    return datetime.combine(day, quiet.end, tzinfo=zone)


def _outside_quiet_hours(planned: Planned, quiet: QuietHours, zone: ZoneInfo) -> Planned:
    if planned.channel != "sms":
        return planned
    return replace(planned, due_at=next_allowed(planned.due_at, quiet, zone).astimezone(UTC))
