"""The dry-run outbox: where messages go when no provider is configured."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Collection
from datetime import UTC, datetime
from pathlib import Path

from . import Message, Unpaced


class Outbox(Unpaced):
    """Appends each message to a plain text file that reads like a log of what patients got."""

    def __init__(self, path: Path, channel: str) -> None:
        self.path = path
        self.channel = channel
        self._lock = threading.Lock()

    def send(self, message: Message) -> str:
        provider_id = f"dry-{uuid.uuid4().hex[:16]}"
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        lines = [
            f"--- {stamp} {self.channel} to {message.to} (notification {message.notification_id})"
        ]
        if message.subject:
            lines.append(f"Subject: {message.subject}")
        lines += [message.text, *(f"[attached {a.filename}]" for a in message.attachments), ""]
        # Readable by its owner only: it holds patients' numbers, addresses and messages.
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with open(fd, "a", encoding="utf-8") as out:
                out.write("\n".join(lines) + "\n")
        return provider_id

    def find(self, message: Message, known: Collection[str]) -> str | None:
        return None  # appending to a local file never leaves an outcome in doubt
