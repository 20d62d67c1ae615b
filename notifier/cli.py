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
from importlib import metadata
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from . import db, logs, runtime, web_processes
from .clinic import ConfigError
from .runtime import Runtime
from .staff.commands import add_commands, add_template_commands

log = logging.getLogger("notifier")


def main(argv: list[str] | None = None) -> int:
    """Exit codes: 0 done, 1 failed, 2 a usage or configuration error (argparse's own too);
    a user's mistake gets one line on stderr, never a traceback."""
    args = parser().parse_args(argv)
    quiet = args.run in (demo, remind_now, apikey, db_upgrade, doctor, templates_check, purge) or (
        args.run.__module__ == "notifier.staff.commands"
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
    top.add_argument("--version", action="version", version=f"notifier {_version()}")
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
    command("scheduler", scheduler, "the clock: claims due notifications, enqueues them")
    db_cmd = command("db", db_upgrade, "database schema")
    db_cmd.add_argument("action", choices=["upgrade"], help="create or migrate the schema")
    demo_cmd = command("demo", demo, "play a whole clinic day, dry-run, and print the timeline")
    demo_cmd.add_argument(
        "--date", type=_day, help="the clinic day to play (YYYY-MM-DD); default: next Tuesday"
    )
    key_cmd = command("apikey", apikey, "create an API key (printed once, stored hashed)")
    key_cmd.add_argument("action", choices=["create"], help="what to do with the key")
    key_cmd.add_argument("name", help="who the key is for, shown where it is used")
    command("doctor", doctor, "check config, templates, database, broker, Twilio and SMTP")
    purge_cmd = command(
        "purge", purge, "blank message bodies and reply texts past the retention period"
    )
    purge_cmd.add_argument("--dry-run", action="store_true", help="only say what would be blanked")
    templates_cmd = commands.add_parser("templates", help="SMS templates: check all, preview one")
    template_actions = templates_cmd.add_subparsers(required=True, metavar="ACTION")
    check_help = "every SMS template and its segments"
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


def _version() -> str:
    try:
        return metadata.version("notifier")
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


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

    settings = runtime.settings_from_env()
    if not settings.secret_key:
        settings = replace(settings, secret_key=_local_secret(Path("notifier.secret")))
    rt = runtime.from_env(settings)
    rt.prepare_database()
    executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="send")
    clock = BackgroundScheduler(timezone="UTC")
    schedule_ticks(clock, rt, in_process(rt, executor))
    clock.start()
    log.info("dry-run outbox: %s", rt.settings.outbox_path.resolve())
    try:
        _run_web(rt, args.host, args.port)
    finally:
        clock.shutdown(wait=False)
        executor.shutdown(wait=True)


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

    argv = ["worker", "--loglevel=INFO", "--without-gossip", "--without-mingle"]
    if args.concurrency:
        argv.append(f"--concurrency={args.concurrency}")
    celery_app.worker_main(argv)


def scheduler(args: argparse.Namespace) -> None:
    from apscheduler.schedulers.blocking import BlockingScheduler

    from .dispatch import schedule_ticks
    from .tasks import enqueue

    rt = runtime.from_env(runtime.distributed_settings("scheduler"))
    clock = BlockingScheduler(timezone="UTC")
    schedule_ticks(clock, rt, enqueue)
    log.info("clock started")
    with contextlib.suppress(KeyboardInterrupt, SystemExit):
        clock.start()


def purge(args: argparse.Namespace) -> int:
    from .retention import purge as run_purge

    rt = runtime.from_env()
    try:
        done = run_purge(rt, rt.clock(), dry_run=args.dry_run)
    except SQLAlchemyError as exc:
        print(
            f"notifier: purge: the database did not answer as expected ({exc.code}):"
            " is it reachable, and its schema made (`notifier db upgrade`)?",
            file=sys.stderr,
        )
        return 1
    verb = "would blank" if args.dry_run else "blanked"
    print(
        f"{verb} {done.bodies} message bodies and {done.replies} reply texts"
        f" older than {done.cutoff:%Y-%m-%d %H:%M}Z ({rt.clinic.policy.retention_days} days);"
        " the rows and counts stay"
    )
    return 0


def db_upgrade(args: argparse.Namespace) -> None:
    rt = runtime.from_env()
    rt.prepare_database()
    print(f"database ready: {rt.engine.url.render_as_string(hide_password=True)}")


def demo(args: argparse.Namespace) -> None:
    from .demo import play

    day = args.date
    play(day, sys.stdout)


def apikey(args: argparse.Namespace) -> None:
    from .api_keys import issue

    print(issue(runtime.from_env(), args.name))


def doctor(args: argparse.Namespace) -> int:
    from .doctor import run

    rt = runtime.from_env()
    return 0 if run(rt, web_processes.broker_ping(rt), sys.stdout) else 1


def templates_check(args: argparse.Namespace) -> int:
    from .doctor import sms_template_segments

    rt = runtime.from_env()
    rows = sms_template_segments(rt.renderer)
    if not rows:
        print(f"notifier: no SMS templates under {rt.settings.templates_dir}", file=sys.stderr)
        return 1
    for kind, lang, length, segments in rows:
        print(f"{kind:<18} {lang}  {length:>3} chars  {segments} segment{'s' * (segments > 1)}")
    return 0 if all(segments == 1 for *_, segments in rows) else 1


def remind_now(args: argparse.Namespace) -> int:
    from .remind import CannotRemind, RemindedRecently, remind

    rt = runtime.from_env()
    with rt.sessions() as session:
        try:
            result = remind(
                session,
                rt.clinic,
                args.appointment_id,
                args.channel or ["sms"],
                args.staff,
                rt.clock(),
                force=args.force,
            )
        except RemindedRecently as exc:
            print(f"notifier: {exc} (--force sends another)", file=sys.stderr)
            return 1
        except CannotRemind as exc:
            print(f"notifier: {exc}", file=sys.stderr)
            return 1
        for n in result.created:
            print(f"reminder {n.id} by {n.channel} due now")
        for channel, why in result.refused.items():
            print(f"not by {channel}: {why}", file=sys.stderr)
    return 0 if result.created else 1
