"""The public-tutorial way to schedule reminders, for memory.py to compare against: one Celery
task per reminder, given to the broker months ahead with `apply_async(eta=...)`, carrying the
phone number and the text (as the tutorials do).

notifier never does this: Redis redelivers unacknowledged ETA tasks after its
visibility timeout (duplicates), and every worker holds every ETA task it has taken in RAM.
"""

from __future__ import annotations

import os

from celery import Celery

app = Celery("tutorial", broker=os.environ.get("NOTIFIER_BROKER_URL", "memory://"))
app.conf.task_default_queue = os.environ.get("BENCH_TUTORIAL_QUEUE", "reminders")
app.conf.task_ignore_result = True


@app.task(name="tutorial.send_reminder")
def send_reminder(phone: str, body: str) -> None:
    """Would text `body` to `phone`; never runs within a benchmark (its ETA is months away)."""
