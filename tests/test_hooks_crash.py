"""`notifier serve` SIGKILLed while a webhook is on the wire: nothing is lost, nothing is
delivered out of order, and the one in flight goes again (same `webhook-id`) after its lease.

Real processes on the wall clock: a SQLite file, `notifier serve` (no Redis), and a receiver
checking signatures with the `standardwebhooks` package.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from notifier import hooks
from notifier.runtime import Runtime
from notifier.settings import Settings
from tests.fakes import free_port, stop, wait_until
from tests.fakes.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.integration

NOTIFIER = [sys.executable, "-m", "notifier"]
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
TIMEOUT = 1.0  # NOTIFIER_PROVIDER_TIMEOUT: the lease on a delivery is 2 × it + 10 s


@contextmanager
def serving(env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as out:
        process = subprocess.Popen(
            [*NOTIFIER, "serve", "--port", str(free_port())],
            env=env, stdout=out, stderr=subprocess.STDOUT, cwd=log.parent,
        )  # fmt: skip
    try:
        yield process
    finally:
        stop([process], 5)


def test_a_kill_mid_delivery_loses_nothing_and_keeps_the_order(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/notifier.db"
    env = {
        **os.environ,
        "NOTIFIER_DATABASE_URL": url,
        "NOTIFIER_PROVIDER_TIMEOUT": str(TIMEOUT),
        "NOTIFIER_OUTBOX": str(tmp_path / "outbox.txt"),
    }
    with WebhookReceiver(SECRET) as receiver:
        subprocess.run([*NOTIFIER, "db", "upgrade"], env=env, check=True, capture_output=True)
        add = [*NOTIFIER, "webhook", "add", receiver.url, "--secret", SECRET]
        subprocess.run(add, env=env, check=True, capture_output=True)
        rt = Runtime.build(Settings(database_url=url))
        with rt.sessions() as session:
            for n in range(5):
                hooks.emit(session, "message.failed", {"message_id": n}, rt.clock())
            session.commit()
        rt.engine.dispose()
        receiver.hang.set()  # the first request is held open, unanswered
        log = tmp_path / "serve.log"
        with serving(env, log) as first:
            assert wait_until(lambda: receiver.held > 0, timeout=30), log.read_text()
            first.send_signal(signal.SIGKILL)
            first.wait()
        receiver.hang.clear()
        receiver.release.set()
        with serving(env, log):
            lease = 2 * TIMEOUT + 10
            assert wait_until(lambda: len(receiver.received) == 5, timeout=lease + 20), (
                log.read_text()[-3000:]
            )
        arrived = [r.body["data"]["message_id"] for r in receiver.received]
        assert arrived == [0, 1, 2, 3, 4]
        assert len({r.message_id for r in receiver.received}) == 5
