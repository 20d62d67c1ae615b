"""How soon `notifier serve` is ready after launch, on embedded defaults.

Each launch runs `notifier serve` in a fresh temporary directory with no NOTIFIER_* or TWILIO_*
variables (SQLite file created and migrated, no broker) and polls `GET /readyz` until it
answers 200. Median of 5 launches. Baseline in the same run: how long
`python -c "import fastapi, uvicorn"` takes (median of 5), the least any FastAPI service pays.

    .venv/bin/python benchmarks/embedded_start.py [--quick] [--launches 5]
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402

from benchmarks.harness import (  # noqa: E402
    NOTIFIER,
    Figure,
    arguments,
    background_busy,
    free_port,
    median,
    profiled,
    report,
    say,
)

NAME = "embedded_start"
TARGET_SECONDS = 2.0
GIVE_UP_SECONDS = 30.0


def launch_until_ready(env: dict[str, str], profile: str | None = None) -> float:
    """Seconds from launch to the first 200 of /readyz (sampled by py-spy if `profile`)."""
    with tempfile.TemporaryDirectory(prefix="notifier-bench-serve-") as tmp:
        port = free_port()
        url = f"http://127.0.0.1:{port}/readyz"
        log = (Path(tmp) / "serve.log").open("wb")
        started = time.perf_counter()
        serve = subprocess.Popen(
            [*NOTIFIER, "serve", "--port", str(port)],
            env=env,
            cwd=tmp,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            with profiled(serve.pid, profile, Path(tmp) / "serve.pyspy"):
                return _wait_ready(serve, url, started, Path(log.name))
        finally:
            serve.terminate()
            serve.wait(timeout=20)
            log.close()


def _wait_ready(serve: subprocess.Popen[bytes], url: str, started: float, log: Path) -> float:
    while time.perf_counter() - started < GIVE_UP_SECONDS and serve.poll() is None:
        try:
            if httpx.get(url, timeout=0.5).status_code == 200:
                return time.perf_counter() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.01)
    raise RuntimeError(f"notifier serve not ready: {log.read_text()[-2000:]}")


def import_time(env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import fastapi, uvicorn"], env=env, check=True)
    return time.perf_counter() - started


def main() -> None:
    args = arguments(
        __doc__.splitlines()[0],
        launches={"type": int, "default": 5, "help": "launches (default 5)"},
    )
    background = background_busy()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NOTIFIER_", "TWILIO_"))}
    # As an installed service starts: with its modules' bytecode cached (a cache of our own,
    # so the repository gets no __pycache__), even where PYTHONDONTWRITEBYTECODE is set.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(Path(tempfile.gettempdir()) / "notifier-bench-pycache")
    first = {"import_s": import_time(env), "launch_s": launch_until_ready(env)}
    say(f"first launch (bytecode cache filled): ready in {first['launch_s']:.2f} s")
    launches = []
    imports = []
    for attempt in range(args.launches):
        # Interleaved, so that both see the same machine.
        imports.append(import_time(env))
        launches.append(launch_until_ready(env))
        say(f"launch {attempt + 1}: ready in {launches[-1]:.2f} s (imports {imports[-1]:.2f} s)")
    if args.profile:
        seconds = launch_until_ready(env, args.profile)
        say(f"profiled launch: ready in {seconds:.2f} s (py-spy attaches a moment after launch)")
    figures = [
        Figure(
            f"embedded_start notifier serve → /readyz 200 (median of {args.launches})",
            median(launches),
            "s",
            target=TARGET_SECONDS,
            higher_is_better=False,
            baseline=median(imports),
            baseline_label='python -c "import fastapi, uvicorn"',
        )
    ]
    details = {"launches_s": launches, "import_fastapi_uvicorn_s": imports, "first": first}
    report(NAME, figures, details, args.quick, background)


if __name__ == "__main__":
    main()
