"""The command line as a person meets it: every mistake answered in one line on stderr with a
documented exit code (2 usage, 1 failure), never a traceback; no terminal and a closed pipe
handled quietly; a version and help for every option."""

from __future__ import annotations

import argparse
import os
import subprocess
from pathlib import Path

import pytest

from notifier.cli import parser
from tests.test_processes import NOTIFIER


def run(args: list[str], tmp_path: Path, **options: object) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NOTIFIER_", "TWILIO_"))}
    return subprocess.run(
        [*NOTIFIER, *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        **options,  # type: ignore[call-overload]
    )


def test_version(tmp_path: Path) -> None:
    done = run(["--version"], tmp_path)
    assert (done.returncode, done.stdout.split()[0]) == (0, "notifier")


@pytest.mark.parametrize(
    "args, code, says",
    [
        (["demo", "--date", "2026-13-01"], 2, "not a date"),
        (["web", "--port", "99999"], 2, "not a port number"),
        (["worker", "--concurrency", "0"], 2, "not a positive number"),
        (["staff", "create", "amy@clinic.example"], 1, "--password-stdin"),
        (["nonsense"], 2, "invalid choice"),
    ],
)
def test_a_mistake_is_one_line_and_an_exit_code(
    tmp_path: Path, args: list[str], code: int, says: str
) -> None:
    done = run(args, tmp_path)
    assert done.returncode == code, done.stderr
    assert says in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_a_reader_that_leaves_early_gets_no_traceback(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NOTIFIER_", "TWILIO_"))}
    demo = subprocess.Popen(
        [*NOTIFIER, "demo"], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert demo.stdout is not None and demo.stderr is not None
    demo.stdout.readline()
    demo.stdout.close()  # as `notifier demo | head -1` does
    errors = demo.stderr.read().decode()
    assert demo.wait(timeout=60) == 0 and "Traceback" not in errors, errors


def _options(command: argparse.ArgumentParser, path: str) -> list[tuple[str, str | None]]:
    found = []
    for action in command._actions:  # argparse keeps no public list of them
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += _options(sub, f"{path} {name}")
        elif not isinstance(action, argparse._HelpAction | argparse._VersionAction):
            found.append((f"{path} {action.dest}", action.help))
    return found


def test_every_option_and_argument_has_help() -> None:
    missing = [where for where, text in _options(parser(), "notifier") if not text]
    assert not missing, missing
