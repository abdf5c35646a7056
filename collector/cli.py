"""`guestwatch`: the service and the operator's queries over its history."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from collector import __version__, eventloop
from collector.config import DEFAULT_LISTEN, Config, ConfigError, load, parse_duration

log = logging.getLogger("guestwatch")

EPILOG = """\
configuration: one TOML file given by --config or $GUESTWATCH_CONFIG; every key has a
default, so no file at all is valid (see README.md, "Configuration").

times (--at, --since): RFC 3339 ("2026-11-20T14:00:00Z") or an age ("90m", "2h", "7d").
"""


def setup_logging(level: str) -> None:
    logging.basicConfig(
        stream=sys.stderr,
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # uvicorn and APScheduler log every request / job run at INFO: keep them quiet.
    for noisy in ("uvicorn", "uvicorn.error", "apscheduler", "alembic"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))


def parse_when(value: str) -> datetime:
    """An RFC 3339 time, or an age such as "2h" meaning that long ago."""
    try:
        return datetime.now(UTC) - timedelta(seconds=parse_duration(value))
    except ConfigError:
        pass
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an RFC 3339 time or an age such as 2h, got {value!r}"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="guestwatch",
        description="Inventory history, Prometheus metrics and heartbeat liveness for every "
        "VM's guest agent.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"guestwatch {__version__}")
    parser.add_argument("--config", metavar="FILE", help="TOML configuration file")
    parser.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        help="override [service] log_level",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    sub.add_parser("run", help="run the service: poll agents, keep history, serve /metrics")

    demo = sub.add_parser(
        "demo",
        help="a simulated fleet (plus this host's qemu-ga) and the service, nothing to configure",
    )
    demo.add_argument("--vms", type=int, default=6, help="simulated VMs (default 6)")
    demo.add_argument("--dir", default="demo-run", help="working directory (default demo-run)")
    demo.add_argument("--listen", default=DEFAULT_LISTEN, help=f"default {DEFAULT_LISTEN}")
    demo.add_argument(
        "--duration",
        type=parse_duration,
        default=None,
        help="stop after this long (default: until Ctrl-C)",
    )
    demo.add_argument("--no-real-agent", action="store_true", help="do not start qemu-ga")

    from agent.cli import add_agent_commands

    add_agent_commands(sub)

    db = sub.add_parser("db", help="database maintenance")
    db_sub = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    db_sub.add_parser("upgrade", help="create or migrate the schema to the newest revision")
    db_sub.add_parser(
        "prune",
        help="apply [retention] now: fold old samples into hourly/daily roll-ups, delete expired",
    )

    fmt = argparse.ArgumentParser(add_help=False)
    fmt.add_argument("--output", "-o", choices=("table", "json", "csv"), default="table")

    sub.add_parser("vms", parents=[fmt], help="every known VM: state, OS, last heartbeat")

    show = sub.add_parser("show", parents=[fmt], help="one VM's inventory, now or at a time")
    show.add_argument("domain", metavar="DOMAIN")
    show.add_argument("--at", type=parse_when, help="the inventory as it was at TIME")

    history = sub.add_parser("history", parents=[fmt], help="one VM's inventory changes")
    history.add_argument("domain", metavar="DOMAIN")
    history.add_argument("--kind", help="os, hostname, packages, network, filesystems, ...")
    history.add_argument("--since", type=parse_when)

    events = sub.add_parser("events", parents=[fmt], help="change and liveness events")
    events.add_argument("--domain")
    events.add_argument("--type", help="e.g. package_upgraded, liveness_changed")
    events.add_argument("--since", type=parse_when)
    events.add_argument("--limit", type=int, default=200)

    diff = sub.add_parser("diff", parents=[fmt], help="what changed in one VM between two times")
    diff.add_argument("domain", metavar="DOMAIN")
    diff.add_argument("since", metavar="FROM", type=parse_when, help="RFC 3339 time or age")
    diff.add_argument("until", metavar="TO", type=parse_when_or_now, help='a time, or "now"')
    diff.add_argument("--kind", help="only this kind (packages, network, ...)")

    packages = sub.add_parser(
        "packages", parents=[fmt], help="which VMs have a package (at a version, older than one)"
    )
    packages.add_argument("name", metavar="NAME", help="exact package name")
    packages.add_argument("--version", help="exactly this version")
    packages.add_argument(
        "--older-than",
        metavar="V",
        help="versions lower than V, by the VM's package manager's rules (dpkg, rpm)",
    )
    packages.add_argument("--at", type=parse_when, help="as it was at TIME")

    from collector.alerting.cli import add_parser as add_alerts_parser

    add_alerts_parser(sub, fmt)
    return parser


def parse_when_or_now(value: str) -> datetime:
    """`parse_when`, or "now"."""
    return datetime.now(UTC) if value == "now" else parse_when(value)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = load(args.config)
    except ConfigError as exc:
        print(f"guestwatch: configuration error: {exc}", file=sys.stderr)
        return 2
    setup_logging(args.log_level or config.service.log_level)
    try:
        return dispatch(args, config)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `guestwatch show vm | head`
        sys.stderr.close()
        return 0


def dispatch(args: argparse.Namespace, config: Config) -> int:
    from collector import queries
    from collector.alerting import cli as alerts_cli

    if args.command == "run":
        from collector.daemon import run_service

        return eventloop.run(run_service(config), config.service.event_loop)
    if args.command == "demo":
        from collector.demo import run_demo

        return eventloop.run(
            run_demo(
                directory=args.dir,
                vms=args.vms,
                listen=args.listen,
                duration=args.duration,
                real_agent=not args.no_real_agent,
            ),
            config.service.event_loop,
        )
    if args.command == "db" and args.db_command == "prune":
        return queries.prune(config, args)
    if args.command in ("agent", "simulate"):
        from agent.cli import run_agent_command

        return run_agent_command(args, config.service.event_loop)
    if args.command == "db":
        from storage.db import upgrade

        upgrade(config.storage.url)
        print(f"database {redact(config.storage.url)} is at the newest schema revision")
        return 0
    handlers: dict[str, Any] = {
        "vms": queries.vms,
        "show": queries.show,
        "history": queries.history,
        "events": queries.events,
        "diff": queries.diff,
        "packages": queries.packages,
        "alerts": alerts_cli.alerts,
    }
    result: int = handlers[args.command](config, args)
    return result


def redact(url: str) -> str:
    """A database URL without its password, for messages."""
    head, sep, tail = url.partition("://")
    if "@" in tail:
        creds, _, rest = tail.rpartition("@")
        user = creds.split(":", 1)[0]
        return f"{head}{sep}{user}:***@{rest}"
    return url


def dump_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


if __name__ == "__main__":
    raise SystemExit(main())
