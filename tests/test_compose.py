"""docker-compose.yml and the Dockerfile, checked without a Docker engine: every long-running
service has a healthcheck, every `notifier` command in them exists, workers scale, every process
shares one environment, and nothing starts before the schema is there."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from notifier.cli import parser

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
# The processes of the contract (docs/deploy.md), each with the subcommand it must run.
PROCESSES = {
    "migrate": ["db", "upgrade"],
    "web": ["web"],
    "worker": ["worker"],
    "scheduler": ["scheduler"],
}
LONG_RUNNING = ("web", "worker", "scheduler")


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


SERVICES: dict[str, Any] = _compose()["services"]


def _dockerfile_json(instruction: str) -> list[str]:
    """The exec-form (JSON) argument of a Dockerfile instruction, e.g. ENTRYPOINT."""
    match = re.search(rf"^{instruction}\s+(\[.*\])\s*$", DOCKERFILE.read_text(), re.MULTILINE)
    assert match, f"the Dockerfile has no exec-form {instruction}"
    value: list[str] = json.loads(match.group(1))
    return value


def _argv(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    return shlex.split(value) if isinstance(value, str) else [str(part) for part in value]


def _built_here(service: dict[str, Any]) -> bool:
    return "build" in service


def _notifier_argv(service: dict[str, Any]) -> list[str] | None:
    """What the container runs, when it is the `notifier` command; None otherwise."""
    entrypoint = _argv(service.get("entrypoint"))
    if not entrypoint and _built_here(service):
        entrypoint = _dockerfile_json("ENTRYPOINT")
    argv = entrypoint + _argv(service.get("command"))
    if not argv or Path(argv[0]).name != "notifier":
        return None
    return argv[1:]


def _parses(args: list[str]) -> Any:
    try:
        return parser().parse_args(args)
    except SystemExit:
        pytest.fail(f"`notifier {' '.join(args)}` is not a command of notifier.cli")


NOTIFIER_COMMANDS = {
    name: argv for name, service in SERVICES.items() if (argv := _notifier_argv(service))
}


def test_the_processes_of_the_design_are_all_there() -> None:
    assert set(PROCESSES) <= set(NOTIFIER_COMMANDS)
    for name, subcommand in PROCESSES.items():
        assert NOTIFIER_COMMANDS[name][: len(subcommand)] == subcommand, name


@pytest.mark.parametrize("name", sorted(NOTIFIER_COMMANDS))
def test_every_notifier_command_exists_in_the_cli(name: str) -> None:
    _parses(NOTIFIER_COMMANDS[name])


def test_the_images_default_command_exists_in_the_cli() -> None:
    assert _dockerfile_json("ENTRYPOINT") == ["notifier"]
    _parses(_dockerfile_json("CMD"))


def test_web_listens_on_all_interfaces_at_the_published_port() -> None:
    args = _parses(NOTIFIER_COMMANDS["web"])
    published = [str(p).rsplit(":", 1)[-1].split("/")[0] for p in SERVICES["web"]["ports"]]
    assert args.host == "0.0.0.0" and str(args.port) in published


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_service_has_a_healthcheck_but_the_one_shot_migration(name: str) -> None:
    service = SERVICES[name]
    if name == "migrate":
        assert service.get("restart") == "no", "the migration runs once and exits"
        return
    test = _argv(service.get("healthcheck", {}).get("test"))
    assert test and test[0] != "NONE", f"{name} has no healthcheck"


@pytest.mark.parametrize("name", ["worker", "scheduler"])
def test_workers_and_clocks_can_run_in_several_copies(name: str) -> None:
    service = SERVICES[name]
    assert "container_name" not in service
    # A fixed host port can be bound by one container only; a bare container port is fine.
    assert all(":" not in str(port) for port in service.get("ports", [])), service["ports"]


def test_two_clocks_run_by_default() -> None:
    assert SERVICES["scheduler"]["deploy"]["replicas"] >= 2


@pytest.mark.parametrize("name", LONG_RUNNING)
def test_app_services_start_after_the_migration_completed(name: str) -> None:
    depends = SERVICES[name]["depends_on"]
    assert depends["migrate"]["condition"] == "service_completed_successfully"


def test_the_migration_waits_for_a_healthy_database() -> None:
    assert SERVICES["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_every_process_shares_one_environment() -> None:
    # Links signed by a worker are checked by web; Twilio signs callbacks for the public URL.
    environments = {name: SERVICES[name]["environment"] for name in PROCESSES}
    assert len({json.dumps(env, sort_keys=True) for env in environments.values()}) == 1
    env = environments["web"]
    assert env["NOTIFIER_DATABASE_URL"].startswith("postgresql://")
    assert env["NOTIFIER_DATABASE_URL"].endswith("@postgres:5432/notifier")
    assert env["NOTIFIER_BROKER_URL"] == "redis://redis:6379/0"
    assert ":?" in env["NOTIFIER_SECRET_KEY"], "NOTIFIER_SECRET_KEY must be required"
    assert "mailpit:1025" in env["NOTIFIER_SMTP_URL"]
    for name in ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "NOTIFIER_PUBLIC_URL"):
        assert name in env


def test_every_variable_set_is_one_the_code_reads() -> None:
    files = [*sorted((ROOT / "notifier").rglob("*.py")), ROOT / "celeryconfig.py"]
    sources = "".join(path.read_text() for path in files)
    for name in SERVICES["web"]["environment"]:
        assert f'"{name}"' in sources, f"{name} is not read by notifier"


def test_flower_watches_the_apps_broker() -> None:
    broker = SERVICES["web"]["environment"]["NOTIFIER_BROKER_URL"]
    assert f"--broker={broker}" in _argv(SERVICES["flower"]["command"])


def test_the_image_finds_its_templates_and_runs_unprivileged() -> None:
    text = DOCKERFILE.read_text()
    assert "NOTIFIER_TEMPLATES=/app/templates" in text
    assert re.search(r"^COPY \. /app$", text, re.MULTILINE)
    assert (ROOT / "templates" / "sms").is_dir()
    users = re.findall(r"^USER\s+(\S+)", text, re.MULTILINE)
    assert users and users[-1] not in ("root", "0")


def _compose_cli() -> list[str] | None:
    """`docker compose` (v2) or Debian's `docker-compose` (v1); `config` needs no engine."""
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    return ["docker-compose"] if shutil.which("docker-compose") else None


def test_docker_compose_accepts_the_file() -> None:
    cli = _compose_cli()
    if cli is None:
        pytest.fail("no `docker compose` nor `docker-compose`: run scripts/ensure-test-tools")
    env = {**os.environ, "NOTIFIER_SECRET_KEY": "for-the-check"}
    checked = subprocess.run(
        [*cli, "--file", str(COMPOSE), "config", "--quiet"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stderr
