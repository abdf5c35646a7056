"""`guestwatch alerts`: guestwatch's own alerts with their delivery state (table or JSON)."""

from __future__ import annotations

import argparse
import dataclasses

from collector.config import Config
from collector.queries import _output, _store
from storage.alerts import AlertView

STATES = ("pending", "firing", "resolved", "cancelled")


def add_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], fmt: argparse.ArgumentParser
) -> None:
    alerts = sub.add_parser(
        "alerts",
        parents=[fmt],
        help="guestwatch's own alerts (agent down/late), newest first, with delivery state",
        description="Alerts guestwatch raised itself, most recently changed first: pending "
        "(within the hold-down), firing, resolved, or cancelled (a flap, never sent), and "
        "what each receiver has acknowledged.",
    )
    alerts.add_argument("--state", choices=STATES, help="only alerts in this state")
    alerts.add_argument("--domain", help="only this VM's alerts")
    alerts.add_argument("--limit", type=int, default=200, help="at most this many (default 200)")


def _delivery(alert: AlertView) -> str:
    if not alert.deliveries:
        return "-" if alert.state in ("pending", "cancelled") else "not sent"
    parts = []
    for d in alert.deliveries:
        status = d.delivered or "not sent"
        if d.attempts:
            status += f", {d.attempts} failed ({d.last_error})"
        parts.append(f"{d.receiver}: {status}")
    return "; ".join(parts)


def alerts(config: Config, args: argparse.Namespace) -> int:
    with _store(config) as store:
        rows = store.alerts(state=args.state, domain=args.domain, limit=args.limit)
    _output(
        args,
        ["alert", "domain", "state", "since", "ended", "delivery"],
        [[a.alertname, a.domain, a.state, a.starts_at, a.ends_at, _delivery(a)] for a in rows],
        [dataclasses.asdict(r) for r in rows],
    )
    return 0
