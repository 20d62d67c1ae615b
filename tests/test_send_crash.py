"""A worker SIGKILLed in the middle of a batch, again and again, on the real stack (PostgreSQL,
Redis, `notifier scheduler` and `notifier worker` processes, the twilio SDK against the fake
Twilio, SMTP to a loopback server).

What a crash may cost, and no more: no text twice (an unknown one is looked up at Twilio); an
email again only with its own Message-ID and only as many as the killed worker had on the wire
(NOTIFIER_SEND_CONCURRENCY calls per pool process), because each acceptance is written down
before the batch sends on; its messages late by at most a lease; the sender's rate slots it
reserved and never used given back, so the texts flow again at the sender's rate; and emails
never waiting behind texts that wait for their sender's slot.
"""

from __future__ import annotations

import random
import time
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest

from tests.chaos import (
    RESTART_SLACK_SECONDS,
    ChaosPlan,
    Deployment,
    ServiceMissing,
    await_final,
    busiest,
    deployment,
    duplicates_per_kill,
    email_tally,
    notification_rows,
    tally,
    text_times,
)
from tests.fakes import wait_until

pytestmark = pytest.mark.integration

SEND_CONCURRENCY = 4  # NOTIFIER_SEND_CONCURRENCY
POOL = 2  # `notifier worker --concurrency`
# "Within a few seconds of being due": a clock tick to claim it, a task, an SMTP exchange.
EMAIL_PROMPT_SECONDS = 5.0


def crash_plan(texts: int, emails: int, senders: int) -> ChaosPlan:
    """One clock and one worker, no provider faults and no monkey: the test kills the worker
    itself. A short queue lease, so a killed worker's prefetched tasks come back in seconds."""
    return ChaosPlan(
        n=texts,
        emails=emails,
        senders=senders,
        schedulers=1,
        workers=1,
        concurrency=POOL,
        send_concurrency=SEND_CONCURRENCY,
        kills=False,
        redis_restarts=0,
        error_rate=0,
        hang_rate=0,
        drop_rate=0,
        provider_timeout=1.0,
        queue_lease_seconds=5.0,
    )


@contextmanager
def running(plan: ChaosPlan, workdir: Path, **due: timedelta) -> Iterator[Deployment]:
    try:
        with deployment(plan, workdir, **due) as d:
            yield d
    except ServiceMissing as exc:
        pytest.fail(str(exc))


def sending(d: Deployment) -> bool:
    """Waits until the providers hear from the worker (re)started last; False if they never do."""
    seen = d.accepted()
    return wait_until(lambda: d.accepted() > seen, timeout=d.plan.lease_seconds + 30, interval=0.01)


def crash(d: Deployment, kills: list[float]) -> None:
    kills.append(time.time())
    d.fleet.crash("worker-0")
    # An answer already on its way when the worker died may still land: let it, so that the
    # next "the worker is sending" is the new worker's.
    time.sleep(0.2)


def relative(d: Deployment, moments: list[float]) -> str:
    return ", ".join(f"{at - d.started:.1f}" for at in moments)


@pytest.mark.timeout(420)
def test_a_worker_killed_mid_batch_ten_times_sends_no_text_twice_and_few_emails_again(
    tmp_path: Path,
) -> None:
    """200 texts out of 10 senders at 1 a second and 200 emails, all due at once; the worker is
    killed at a random moment up to half a second after the providers first hear from it, and
    restarted, ten times."""
    plan = crash_plan(texts=200, emails=200, senders=10)
    rng = random.Random(plan.seed)
    kills: list[float] = []
    with running(plan, tmp_path) as d:
        for _ in range(10):
            if not sending(d):
                break
            time.sleep(rng.uniform(0.0, 0.5))
            crash(d, kills)
        settled = await_final(d.engine, 180)
        time.sleep(plan.provider_timeout)  # an answer on its way lands before the count
        report = tally(d, time.time() - d.started, Counter(worker=len(kills)), 0)
        mail = email_tally(d, notification_rows(d.engine))
        per_kill = duplicates_per_kill(mail.duplicated_at, kills)
    summary = "\n".join(
        [
            report.summary(),
            f"kills at (s after start)     {relative(d, kills)}",
            f"email duplicates per kill    {per_kill[:-1]} (at most {plan.emails_in_flight} each:"
            f" NOTIFIER_SEND_CONCURRENCY {SEND_CONCURRENCY} × {POOL} pool processes)",
            f"email duplicates, no kill    {per_kill[-1]}",
            f"settled                      {settled}",
            f"process logs                 {tmp_path}",
        ]
    )
    print(summary)
    assert len(kills) == 10, f"only {len(kills)} kills found the worker sending\n{summary}"
    assert (report.duplicates, report.lost, report.pending) == (0, 0, 0), summary
    assert (report.emails_lost, report.email_foreign_ids, report.mismatched) == (0, 0, 0), summary
    assert max(per_kill[:-1]) <= plan.emails_in_flight and per_kill[-1] == 0, summary


@pytest.mark.timeout(420)
def test_after_eight_worker_kills_texts_flow_again_within_a_lease_and_emails_never_wait(
    tmp_path: Path,
) -> None:
    """One sender at the default 1 text a second: 60 texts fall due over 20 s (a backlog of a
    minute), 60 emails over 72 s. The worker is killed every 2 to 4 s, eight times. After the
    last kill the texts must flow again within a lease, and drain at the rate; an email goes
    within a few seconds of being due, late only by the leases of kills it lived through."""
    plan = crash_plan(texts=60, emails=60, senders=1)
    rng = random.Random(plan.seed)
    kills: list[float] = []
    every = {"text_every": timedelta(seconds=1 / 3), "email_every": timedelta(seconds=1.2)}
    with running(plan, tmp_path, **every) as d:
        if not wait_until(lambda: d.accepted() > 0, timeout=30, interval=0.05):
            pytest.fail(f"nothing was sent in 30 s; process logs: {tmp_path}")
        for _ in range(8):
            time.sleep(rng.uniform(2.0, 4.0))
            crash(d, kills)
        last_kill = kills[-1]
        texts_left = plan.n - len(
            {m["to"] for m in d.fake.messages if m["received_at"] <= last_kill}
        )
        lease = plan.lease_seconds
        texts_due_by = last_kill + lease + texts_left / plan.rate + RESTART_SLACK_SECONDS
        emails_due_by = max(d.planted.due_at.values()) + EMAIL_PROMPT_SECONDS
        wait_until(
            lambda: len(d.fake.messages) >= plan.n and len(d.smtp.received) >= plan.emails,
            timeout=max(texts_due_by, emails_due_by) - time.time() + 5,
            interval=0.2,
        )
        sent = {m["to"] for m in d.fake.messages}
        times = text_times(d.fake)
        mail = email_tally(d, notification_rows(d.engine))
    (sender_times,) = times.values() if times else ([],)
    after = [at for at in sender_times if at > last_kill]
    resumed = after[0] - last_kill if after else float("inf")
    finished = sender_times[-1] if len(sent) == plan.n else float("inf")
    # Every kill a message lived through (from a little before it fell due, as a restarting
    # worker takes a moment) may hold it for a lease.
    restarts = [d.started, *kills]
    late: list[str] = []
    lateness: list[float] = []
    for address, nid in d.planted.emails.items():
        due, arrived = d.planted.due_at[nid], mail.first_copy_at.get(nid, float("inf"))
        lived = bisect_left(restarts, arrived) - bisect_left(restarts, due - RESTART_SLACK_SECONDS)
        allowed = EMAIL_PROMPT_SECONDS + lived * (lease + RESTART_SLACK_SECONDS)
        lateness.append(arrived - due)
        if arrived - due > allowed:
            late.append(
                f"{address} due {due - d.started:.1f} s, sent {arrived - due:.1f} s late"
                f" (allowed {allowed:.0f} s, {lived} kills)"
            )
    summary = "\n".join(
        [
            f"texts due              {plan.n} from one sender at {plan.rate:g}/s",
            f"texts accepted         {len(sent)} ({len(sender_times)} with duplicates)",
            f"kills at (s)           {relative(d, kills)}",
            f"texts left at the last kill {texts_left}",
            f"texts flowed again     {resumed:.1f} s after the last kill (lease {lease:g} s"
            f" + {RESTART_SLACK_SECONDS:g} s to restart)",
            f"texts drained at       {finished - d.started:.1f} s"
            f" (bound {texts_due_by - d.started:.1f} s: last kill + lease +"
            f" {texts_left} / {plan.rate:g} + {RESTART_SLACK_SECONDS:g})",
            f"busiest 10 s           {busiest(sender_times, 10.0)} texts"
            f" (allowed {int(10 * plan.rate) + 1})",
            f"emails accepted        {mail.accepted} of {plan.emails}, {mail.duplicates} again",
            f"email lateness         max {max(lateness):.1f} s;"
            f" {len(late)} later than allowed: {late[:5]}",
            f"process logs           {tmp_path}",
        ]
    )
    print(summary)
    assert len(sent) == plan.n and len(sender_times) == plan.n, summary
    assert resumed <= lease + RESTART_SLACK_SECONDS or texts_left == 0, summary
    assert finished <= texts_due_by, summary
    assert busiest(sender_times, 10.0) <= int(10 * plan.rate) + 1, summary
    assert not late and mail.accepted == plan.emails, summary
