"""The README's tour, run twice as a reader would paste it: its commands are read from
README.md, so a tour that drifts from what the service does fails here."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.fakes import free_port, stop, wait_until

ROOT = Path(__file__).resolve().parent.parent
NOTIFIER = str(Path(sys.executable).parent / "notifier")
PASSWORD = "a long passphrase for the tour"


def tour_commands() -> list[str]:
    """The ```sh blocks of the README's tour, in order."""
    readme = (ROOT / "README.md").read_text()
    tour = readme.split("## A 5-minute tour", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)```", tour, re.DOTALL)


def the_block(blocks: list[str], pattern: str) -> str:
    [block] = [b for b in blocks if re.search(pattern, b)]
    return block


@pytest.fixture(scope="module")
def blocks() -> list[str]:
    found = tour_commands()
    assert len(found) >= 4, found
    return found


def environment(serve_line: str) -> dict[str, str]:
    """A reader's shell: no NOTIFIER_* or TWILIO_* of ours, plus what the serve line sets."""
    assigned = re.fullmatch(r"((?:\w+=\S+ )*)make serve", serve_line.strip())
    assert assigned, f"the tour starts the service differently now: {serve_line!r}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NOTIFIER_", "TWILIO_"))}
    env.update(pair.split("=", 1) for pair in assigned.group(1).split())  # type: ignore[misc]
    return env


@contextmanager
def serving(directory: Path, env: dict[str, str], port: int) -> Iterator[list[str]]:
    """`make serve` (the Makefile's `notifier serve`) in the reader's directory; yields the
    lines it logged once it answers."""
    log = directory / f"serve-{port}.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [NOTIFIER, "serve", "--port", str(port)],
            cwd=directory, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            assert wait_until(lambda: _answers(port), timeout=30), log.read_text()
            yield log.read_text().splitlines()
        finally:
            stop([process], timeout=10)


def _answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def paste(block: str, directory: Path, env: dict[str, str], port: int) -> str:
    """Runs a block as pasted into bash, against the test's port and this environment."""
    script = block.replace("127.0.0.1:8000", f"127.0.0.1:{port}").replace(
        ".venv/bin/notifier", NOTIFIER
    )
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=directory, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def posted(output: str) -> tuple[int, dict[str, object]]:
    body, status = output.rstrip("\n").rsplit("\n", 1)
    assert status.startswith("HTTP "), output
    return int(status.removeprefix("HTTP ")), json.loads(body)


def emails_in(outbox: Path) -> int:
    return outbox.read_text().count(" email to ana@example.org") if outbox.exists() else 0


def test_the_tour_works_twice(blocks: list[str], tmp_path: Path) -> None:
    env = environment(the_block(blocks, r"make serve"))
    booking = the_block(blocks, r"/v1/events")
    story = the_block(blocks, r"/v1/appointments/apt-1")
    staff = the_block(blocks, r"staff create").strip()
    outbox = tmp_path / "outbox.txt"
    plans = []
    for time in (1, 2):
        port = free_port()
        with serving(tmp_path, env, port) as said:
            dashboard = f"staff dashboard: http://127.0.0.1:{port}/staff/"
            assert any(line.endswith(dashboard) for line in said), said
            first_account = any("notifier staff create EMAIL" in line for line in said)
            assert first_account == (time == 1), said

            status, answer = posted(paste(booking, tmp_path, env, port))
            assert status == (202 if time == 1 else 200), answer
            assert answer["event"] == {
                "id": "evt-001",
                "outcome": "applied",
                "duplicate": time == 2,
            }
            plans.append([{**n, "status": None} for n in answer["notifications"]])  # type: ignore[attr-defined, dict-item]
            assert wait_until(lambda: emails_in(outbox) >= 1, timeout=10), "no email in outbox"

            appointment = json.loads(paste(story, tmp_path, env, port))
            assert appointment["id"] == "apt-1" and appointment["status"] == "booked"

            created = subprocess.run(
                ["bash", "-c", staff.replace(".venv/bin/notifier", NOTIFIER) + " --password-stdin"],
                cwd=tmp_path, env=env, input=PASSWORD + "\n", capture_output=True, text=True,
            )  # fmt: skip
            if time == 1:
                assert created.returncode == 0, created.stderr
            else:  # one line, no traceback: the account is there from the first time
                assert created.returncode == 1
                assert (
                    created.stderr.count("\n") == 1 and "already has an account" in created.stderr
                )

            pages = signed_in_pages(port, "you@clinic.example", PASSWORD, dashboard_links())
            assert all("Ana" in page for page in pages[1:]), "Ana's visit is not shown"
    assert plans[0] == plans[1], "the second post planned something new"
    assert emails_in(outbox) == 1, "the duplicate sent the confirmation again"


def dashboard_links() -> list[str]:
    """The dashboard pages the tour's last step sends the reader to, the board first."""
    readme = (ROOT / "README.md").read_text()
    tour = readme.split("## A 5-minute tour", 1)[1].split("\n## ", 1)[0]
    links = re.findall(r"<http://127\.0\.0\.1:8000(/staff/[^>]*)>", tour)
    assert links and links[0] == "/staff/", links
    return links


def signed_in_pages(port: int, email: str, password: str, paths: list[str]) -> list[str]:
    """Opens the dashboard's pages as a browser would: sent to sign in first."""
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", follow_redirects=True) as browser:
        page = browser.get(paths[0])
        assert page.status_code == 200 and "/staff/login" in str(page.url)
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf, page.text
        board = browser.post(
            "/staff/login", data={"email": email, "password": password, "csrf": csrf.group(1)}
        )
        assert board.status_code == 200 and board.url.path.rstrip("/") == "/staff", board.url
        assert "<title>Appointments" in board.text
        pages = [board.text]
        for path in paths[1:]:
            answer = browser.get(path)
            assert answer.status_code == 200, path
            pages.append(answer.text)
        return pages
