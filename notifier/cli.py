"""The `notifier` command: the service's processes and the staff tools."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import secrets
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import date, datetime
from pathlib import Path

from . import api_keys, audit, db, logs, runtime, version, web_processes
from .api_keys import SCOPES
from .clinic import ConfigError
from .runtime import Runtime
from .staff.commands import add_commands, add_template_commands

log = logging.getLogger("notifier")


def main(argv: list[str] | None = None) -> int:
    """Exit codes: 0 done, 1 failed, 2 a usage or configuration error (argparse's own too);
    a user's mistake gets one line on stderr, never a traceback."""
    args = parser().parse_args(argv)
    quiet = args.run in (demo, remind_now, db_upgrade, doctor, templates_check) or (
        args.run.__module__ == "notifier.staff.commands" or args.run.__name__.startswith("apikey_")
    )
    try:
        json_logs = runtime.settings_from_env().json_logs
        logs.configure(logging.WARNING if quiet else logging.INFO, json_logs)
        return int(args.run(args) or 0)
    except (ConfigError, ValueError) as exc:  # settings and config files name what is wrong
        print(f"notifier: {exc}", file=sys.stderr)
        return 2
    except EOFError:
        print("notifier: no input to read (no terminal?): use --password-stdin", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader left (`notifier plan … | head`): nothing more to say, and nowhere to say it.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        return 130


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="notifier", description=__doc__)
    top.add_argument("--version", action="version", version=f"notifier {version()}")
    commands = top.add_subparsers(required=True, metavar="COMMAND")

    def command(name: str, run: object, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        sub.set_defaults(run=run)
        return sub

    for name, run, help in (
        ("serve", serve, "web + clock + worker in one process, no servers needed"),
        ("web", web, "the HTTP API"),
    ):
        sub = command(name, run, help)
        sub.add_argument(
            "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"
        )
        sub.add_argument(
            "--port", type=_port, default=8000, help="port to listen on (default 8000)"
        )
        if name == "web":
            sub.add_argument(
                "--workers",
                type=_positive,
                default=1,
                help="processes sharing the port (default 1); each uses up to one core",
            )
    worker_cmd = command(
        "worker", worker, "the Celery worker that sends (needs NOTIFIER_BROKER_URL)"
    )
    worker_cmd.add_argument(
        "--concurrency",
        type=_positive,
        default=None,
        help="pool processes sending at once (default: one per core)",
    )
    scheduler_cmd = command(
        "scheduler", scheduler, "the clock: claims due notifications, enqueues them"
    )
    for sub in (worker_cmd, scheduler_cmd):
        sub.add_argument(
            "--metrics-port",
            type=_port,
            default=None,
            help="serve this process's liveness to Prometheus on this port (default: none)",
        )
    db_cmd = command("db", db_upgrade, "database schema")
    db_cmd.add_argument("action", choices=["upgrade"], help="create or migrate the schema")
    demo_cmd = command("demo", demo, "play a whole clinic day, dry-run, and print the timeline")
    demo_cmd.add_argument(
        "--date", type=_day, help="the clinic day to play (YYYY-MM-DD); default: next Tuesday"
    )
    _add_apikey(commands)
    command("doctor", doctor, "check config, templates, database, broker, Twilio and SMTP")
    templates_cmd = commands.add_parser("templates", help="SMS templates: check all, preview one")
    template_actions = templates_cmd.add_subparsers(required=True, metavar="ACTION")
    check_help = (
        "every SMS template with worst-case names: characters, segments and encoding;"
        " fails if one does not fit one GSM-7 segment for a 15-letter name"
    )
    template_actions.add_parser("check", help=check_help, description=check_help).set_defaults(
        run=templates_check
    )
    add_template_commands(template_actions)
    add_commands(commands)
    remind_cmd = command("remind", remind_now, "send a reminder for an appointment now")
    remind_cmd.add_argument("appointment_id", help="the booking system's appointment id")
    remind_cmd.add_argument(
        "--channel",
        choices=["sms", "email"],
        action="append",
        help="sms or email; give it twice for both (default sms)",
    )
    remind_cmd.add_argument(
        "--staff", default="cli", help="who asked, for the appointment's history (default cli)"
    )
    remind_cmd.add_argument(
        "--force", action="store_true", help="send even if one was sent in the last 10 minutes"
    )
    return top


def _add_apikey(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    keys = commands.add_parser("apikey", help="API keys: create (printed once), list, revoke")
    actions = keys.add_subparsers(required=True, metavar="ACTION")
    help = "create a key; it is printed once and only its hash is kept"
    create = actions.add_parser("create", help=help, description=help)
    create.add_argument("name", help="who the key is for: the name the audit log shows")
    create.add_argument(
        "--scope",
        action="append",
        choices=SCOPES,
        help="what the key may do: events, read or remind; repeat for more (default: all)",
    )
    create.set_defaults(run=apikey_create)
    help = "every key: name, scopes, when created and revoked"
    actions.add_parser("list", help=help, description=help).set_defaults(run=apikey_list)
    help = "revoke the key with this name: it is refused from now on"
    revoke = actions.add_parser("revoke", help=help, description=help)
    revoke.add_argument("name", help="the key's name, as `apikey list` shows it")
    revoke.set_defaults(run=apikey_revoke)


def _day(given: str) -> date:
    try:
        return datetime.strptime(given, "%Y-%m-%d").date()
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {given!r}") from None


def _port(given: str) -> int:
    if not given.isdigit() or not 0 < int(given) < 65536:
        raise argparse.ArgumentTypeError(f"not a port number (1-65535): {given!r}")
    return int(given)


def _local_secret(path: Path) -> str:
    """The embedded mode's key, made once and kept beside the SQLite file, so links and staff
    sessions survive a restart without any setup."""
    if not path.exists():
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip()


def serve(args: argparse.Namespace) -> None:
    from apscheduler.schedulers.background import BackgroundScheduler

    from .dispatch import in_process, schedule_ticks
    from .hooks import schedule_deliveries

    settings = runtime.settings_from_env()
    if not settings.secret_key:
        settings = replace(settings, secret_key=_local_secret(Path("notifier.secret")))
    rt = runtime.from_env(settings)
    rt.prepare_database()
    executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="send")
    clock = BackgroundScheduler(timezone="UTC")
    schedule_ticks(clock, rt, in_process(rt, executor))
    schedule_deliveries(clock, rt)
    clock.start()
    log.info("dry-run outbox: %s", rt.settings.outbox_path.resolve())
    _say_where_the_dashboard_is(rt, args.host, args.port)
    try:
        _run_web(rt, args.host, args.port)
    finally:
        clock.shutdown(wait=False)
        executor.shutdown(wait=True)


def _say_where_the_dashboard_is(rt: Runtime, host: str, port: int) -> None:
    from .staff.accounts import anyone

    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    log.info("staff dashboard: http://%s:%s/staff/", shown, port)
    with rt.sessions() as session:
        if not anyone(session):
            log.info(
                "no staff account yet: create the first with"
                " `notifier staff create EMAIL` (it asks for a password)"
            )


def web(args: argparse.Namespace) -> None:
    rt = runtime.from_env(runtime.distributed_settings("web", needs_broker=False))
    with rt.sessions() as session:  # a location or treatment added to the file is known at once
        db.sync_clinic(session, rt.clinic)
    if args.workers == 1:
        _run_web(rt, args.host, args.port)
    else:
        rt.engine.dispose()  # each worker process connects for itself
        web_processes.run(args.host, args.port, args.workers)


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive number")
    return number


def _run_web(rt: Runtime, host: str, port: int) -> None:
    import uvicorn

    from .web import create_app

    # log_config=None: uvicorn's lines go through our handlers, masked and in the chosen format.
    uvicorn.run(
        create_app(rt, web_processes.broker_ping(rt)), host=host, port=port, log_config=None
    )


def worker(args: argparse.Namespace) -> None:
    runtime.from_env(
        runtime.distributed_settings("worker")
    ).engine.dispose()  # checks the config now; each worker process connects for itself
    from .tasks import app as celery_app

    _serve_liveness(args, "worker")
    argv = ["worker", "--loglevel=INFO", "--without-gossip", "--without-mingle"]
    if args.concurrency:
        argv.append(f"--concurrency={args.concurrency}")
    celery_app.worker_main(argv)


def scheduler(args: argparse.Namespace) -> None:
    from apscheduler.schedulers.blocking import BlockingScheduler

    from .dispatch import schedule_ticks
    from .hooks import schedule_deliveries
    from .tasks import enqueue

    rt = runtime.from_env(runtime.distributed_settings("scheduler"))
    clock = BlockingScheduler(timezone="UTC")
    schedule_ticks(clock, rt, enqueue)
    schedule_deliveries(clock, rt)
    _serve_liveness(args, "scheduler")
    log.info("clock started")
    with contextlib.suppress(KeyboardInterrupt, SystemExit):
        clock.start()


def _serve_liveness(args: argparse.Namespace, process: str) -> None:
    if args.metrics_port:
        from .metrics import serve_liveness

        serve_liveness(args.metrics_port, process)
        log.info("liveness for Prometheus on port %s", args.metrics_port)


def db_upgrade(args: argparse.Namespace) -> None:
    rt = runtime.from_env()
    rt.prepare_database()
    print(f"database ready: {rt.engine.url.render_as_string(hide_password=True)}")


def demo(args: argparse.Namespace) -> None:
    from .demo import play

    day = args.date
    play(day, sys.stdout)


def apikey_create(args: argparse.Namespace) -> int:
    rt = runtime.from_env()
    try:
        key = api_keys.issue(rt, args.name, args.scope or [])
    except api_keys.ApiKeyError as exc:
        print(f"notifier: {exc}", file=sys.stderr)
        return 1
    _audited(rt, "apikey.create", f"api_key:{args.name.strip()}", ",".join(args.scope or SCOPES))
    print(key)
    return 0


def apikey_list(args: argparse.Namespace) -> None:
    rt = runtime.from_env()
    keys = api_keys.listed(rt)
    if not keys:
        print("no keys issued (keys in NOTIFIER_API_KEYS are not listed)", file=sys.stderr)
    for key in keys:
        state = f"revoked {key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "live"
        print(f"{key.name:<24} {key.scopes:<20} created {key.created_at:%Y-%m-%d %H:%M}  {state}")


def apikey_revoke(args: argparse.Namespace) -> int:
    rt = runtime.from_env()
    try:
        count = api_keys.revoke(rt, args.name)
    except api_keys.ApiKeyError as exc:
        print(f"notifier: {exc}", file=sys.stderr)
        return 1
    _audited(rt, "apikey.revoke", f"api_key:{args.name}")
    print(f"revoked: {args.name}" + (f" ({count} keys)" if count > 1 else ""))
    return 0


def _audited(
    rt: Runtime, action: str, subject: str, detail: str | None = None, outcome: str = "ok"
) -> None:
    with rt.sessions() as session:
        audit.record(
            session, rt.clock(), audit.cli_actor(), action, subject,
            address="local", outcome=outcome, detail=detail,
        )  # fmt: skip


def doctor(args: argparse.Namespace) -> int:
    from .doctor import run

    rt = runtime.from_env()
    return 0 if run(rt, web_processes.broker_ping(rt), sys.stdout) else 1


def templates_check(args: argparse.Namespace) -> int:
    from .templates_check import report, rows

    rt = runtime.from_env()
    found = rows(rt.renderer)
    if not found:
        print(f"notifier: no SMS templates under {rt.settings.templates_dir}", file=sys.stderr)
        return 1
    return 0 if report(found, sys.stdout) else 1


def remind_now(args: argparse.Namespace) -> int:
    from .remind import CannotRemind, RemindedRecently, remind

    rt = runtime.from_env()
    channels = args.channel or ["sms"]
    forced = "; forced" if args.force else ""
    note = f"channels: {','.join(channels)}{forced}; --staff {args.staff!r}"
    subject = f"appointment:{args.appointment_id}"
    with rt.sessions() as session:
        try:
            result = remind(
                session,
                rt.clinic,
                args.appointment_id,
                channels,
                args.staff,
                rt.clock(),
                force=args.force,
            )
        except RemindedRecently as exc:
            _audited(rt, "reminder", subject, note, "refused")
            print(f"notifier: {exc} (--force sends another)", file=sys.stderr)
            return 1
        except CannotRemind as exc:
            _audited(rt, "reminder", subject, note, "refused")
            print(f"notifier: {exc}", file=sys.stderr)
            return 1
        _audited(rt, "reminder", subject, note, "ok" if result.created else "refused")
        for n in result.created:
            said = result.outcomes[n.channel]
            print(
                f"reminder {n.id} by {n.channel} "
                + ("due now" if said.result == "sent" else said.text)
            )
        for channel, why in result.refused.items():
            print(f"not by {channel}: {why}", file=sys.stderr)
    return 0 if result.created else 1
