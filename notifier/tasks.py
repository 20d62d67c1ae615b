"""The Celery door: tasks take notification ids and call into `send`."""

from __future__ import annotations

from collections.abc import Sequence

from celery import Celery, Task

from .runtime import Runtime
from .send import deliver
from .settings import Settings

app = Celery("notifier")
app.config_from_object("celeryconfig")

_runtime: Runtime | None = None


def runtime() -> Runtime:
    # Built on first use inside each worker process, so forked children never share connections.
    global _runtime
    if _runtime is None:
        _runtime = Runtime.build(Settings.from_env())
    return _runtime


@app.task(name="notifier.deliver", bind=True)
def deliver_batch(self: Task, ids: list[int]) -> None:
    worker = f"worker:{self.request.hostname}"
    deliver(runtime(), ids, worker)


def enqueue(ids: Sequence[int]) -> None:
    deliver_batch.apply_async(args=[list(ids)])


def broker_ping() -> None:
    """Raises unless the broker answers within a couple of seconds."""
    with app.connection_for_write() as connection:
        connection.ensure_connection(max_retries=1, timeout=2)
