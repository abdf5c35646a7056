"""guestwatch's own alerts as a durable outbox: opened and closed with the liveness events.

`on_liveness` runs inside `Store.write`'s transaction, so an alert row commits together with the
transition that raised it (a crash cannot keep one without the other). An alert opens `pending`,
becomes `firing` once it has lasted `hold_down` (`promote`, called by the delivery task), and
closes `resolved` — or `cancelled` when it ends within the hold-down: a flap, never sent.
Per receiver, `alert_deliveries` remembers the last phase acknowledged; `due` lists what still
has to be sent and `record` stores the outcome with a capped exponential back-off. Labels and
`starts_at` are frozen at opening, so a re-send after a crash is the same alert to Alertmanager.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, cast

from sqlalchemy import Engine, Table, and_, bindparam, case, delete, func, insert, or_, select
from sqlalchemy.engine import Connection

from storage import db
from storage.models import (
    KEY_LEN,
    NAME_LEN,
    PROTOCOL_LEN,
    REASON_LEN,
    UUID_LEN,
    AlertDelivery,
    AlertRow,
    Vm,
)
from storage.records import LivenessChanged, Record

_ALERTS = cast(Table, AlertRow.__table__)
_DELIVERIES = cast(Table, AlertDelivery.__table__)
_VMS = cast(Table, Vm.__table__)

#: Liveness state → (alertname, severity) of the alert it raises when configured to.
ALERTS: Final = {"down": ("GuestAgentDown", "critical"), "late": ("GuestAgentLate", "warning")}
OPEN: Final = ("pending", "firing")
PENDING, FIRING, RESOLVED, CANCELLED = "pending", "firing", "resolved", "cancelled"
#: A resolved alert is still delivered to a receiver that missed it for this long; beyond, a
#: receiver added later is not flooded with old history.
RESOLVED_DELIVERY_WINDOW: Final = timedelta(days=1)
#: Ended alerts (resolved, cancelled) are deleted this long after they ended.
RETENTION: Final = timedelta(days=30)
_CHUNK: Final = 500


class AlertPolicy:
    """Which transitions open an alert, the hold-down, who delivers; counts flaps.

    `flaps` counts alerts that ended within their hold-down because the agent came back up
    (counted when the write runs: a rolled-back write that is retried may count twice).
    """

    __slots__ = ("alert_on", "flaps", "hold_down", "source")

    def __init__(self, *, source: str, alert_on: Iterable[str] = ("down",), hold_down: float = 0.0):
        self.source = source
        self.alert_on = frozenset(alert_on)
        self.hold_down = timedelta(seconds=hold_down)
        self.flaps = 0


@dataclass(frozen=True, slots=True)
class DeliveryView:
    receiver: str
    delivered: str  # "", firing or resolved: the last phase the receiver acknowledged
    attempts: int  # failed attempts since the last success
    last_sent: datetime | None
    next_attempt: datetime | None
    last_error: str


@dataclass(frozen=True, slots=True)
class AlertView:
    """One alert with its delivery state, for `guestwatch alerts` and `/api/v1/alerts`."""

    id: int
    key: str
    alertname: str
    state: str  # pending, firing, resolved, cancelled
    domain: str
    vm_key: str
    severity: str
    starts_at: datetime
    fire_at: datetime
    ends_at: datetime | None
    labels: dict[str, str]
    annotations: dict[str, str]
    deliveries: tuple[DeliveryView, ...]


@dataclass(frozen=True, slots=True)
class Notification:
    """One alert in one phase, due to one receiver."""

    alert_id: int
    key: str
    phase: str  # firing or resolved
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: datetime
    ends_at: datetime | None
    delivered: str  # what the receiver had acknowledged before
    attempts: int

    @property
    def idempotency_key(self) -> str:
        """The same for every (re-)send of this alert in this phase."""
        return f"{self.key}:{self.phase}"


def _ts(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def _clean(text: str, limit: int) -> str:
    text = text.encode("utf-8", "replace").decode("utf-8").replace("\x00", "\ufffd")
    return text[:limit]


def _chunks(values: Sequence[int]) -> Iterator[Sequence[int]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]


def _loads(text: str) -> dict[str, str]:
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


# ---------------------------------------------------------------------- write path


def on_liveness(
    conn: Connection, policy: AlertPolicy, vm_ids: Mapping[str, int], records: Sequence[Record]
) -> None:
    """Open and close alerts for the batch's liveness transitions, in the caller's transaction.

    Three statements whatever the batch: one SELECT of the open alerts (and heartbeats), one
    UPDATE closing alerts, one INSERT opening them. A transition into an alerting state opens
    its alert (closing another alertname: late → down); any other transition closes it.
    """
    transitions = [
        (vm_ids[_clean(r.vm.key, KEY_LEN)], r) for r in records if isinstance(r, LivenessChanged)
    ]
    if not transitions:
        return
    ids = sorted({vm_id for vm_id, _ in transitions})
    current: dict[int, dict[str, Any]] = {}
    heartbeats: dict[int, datetime | None] = {}
    for chunk in _chunks(ids):
        for row in conn.execute(
            select(_ALERTS.c.id, _ALERTS.c.vm_id, _ALERTS.c.alertname, _ALERTS.c.fire_at)
            .where(_ALERTS.c.vm_id.in_(chunk))
            .where(_ALERTS.c.state.in_(OPEN))
            .order_by(_ALERTS.c.id)
        ):
            current[row.vm_id] = {"id": row.id, "alertname": row.alertname, "fire_at": row.fire_at}
        for vm in conn.execute(
            select(_VMS.c.id, _VMS.c.last_heartbeat).where(_VMS.c.id.in_(chunk))
        ):
            heartbeats[vm.id] = vm.last_heartbeat

    inserts: list[dict[str, Any]] = []
    closes: list[dict[str, Any]] = []
    for vm_id, record in transitions:
        at = _ts(record.at)
        wanted = ALERTS.get(record.new) if record.new in policy.alert_on else None
        alert = current.get(vm_id)
        if alert is not None and wanted is not None and alert["alertname"] == wanted[0]:
            continue
        if alert is not None:
            del current[vm_id]
            within_hold_down = at < alert["fire_at"]
            if within_hold_down and record.new == "up":
                policy.flaps += 1
            if "id" in alert:
                closes.append({"b_id": alert["id"], "b_at": at})
            else:  # opened by this very batch
                alert["state"] = CANCELLED if within_hold_down else RESOLVED
                alert["ends_at"] = alert["updated_at"] = at
        if wanted is not None:
            alert = _new_alert(policy, record, at, wanted, heartbeats.get(vm_id))
            alert["vm_id"] = vm_id
            inserts.append(alert)
            current[vm_id] = alert

    if closes:
        # Decided in SQL, against the row as it is now: an alert the delivery task promoted
        # to firing meanwhile must be resolved (its firing may have been sent), not cancelled.
        closed_state = case(
            (
                or_(_ALERTS.c.state == FIRING, _ALERTS.c.fire_at <= bindparam("b_at")),
                RESOLVED,
            ),
            else_=CANCELLED,
        )
        conn.execute(
            _ALERTS.update()
            .where(_ALERTS.c.id == bindparam("b_id"))
            .where(or_(_ALERTS.c.state == PENDING, _ALERTS.c.state == FIRING))
            .values(state=closed_state, ends_at=bindparam("b_at"), updated_at=bindparam("b_at")),
            closes,
        )
    if inserts:
        conn.execute(insert(_ALERTS), inserts)


def _new_alert(
    policy: AlertPolicy,
    record: LivenessChanged,
    at: datetime,
    wanted: tuple[str, str],
    last_heartbeat: datetime | None,
) -> dict[str, Any]:
    alertname, severity = wanted
    vm = record.vm
    domain = _clean(vm.name, NAME_LEN)
    labels = {
        "alertname": alertname,
        "severity": severity,
        "domain": domain,
        "hypervisor": _clean(vm.hypervisor, NAME_LEN),
        "protocol": _clean(vm.protocol, PROTOCOL_LEN),
    }
    if vm.uuid:  # Alertmanager treats an empty label as absent: leave it out
        labels["uuid"] = _clean(vm.uuid, UUID_LEN)
    last = "never" if last_heartbeat is None else last_heartbeat.isoformat()
    annotations = {
        "summary": f"Guest agent of {domain} is {record.new}",
        "description": (
            f"The guest agent of {domain} on {labels['hypervisor']} stopped answering "
            f"heartbeats ({_clean(record.reason, REASON_LEN) or 'no reason given'}); "
            "the VM itself is still there."
        ),
        "last_heartbeat": last,
    }
    return {
        "key": str(uuid.uuid4()),
        "alertname": alertname,
        "source": _clean(policy.source, NAME_LEN),
        "state": PENDING,
        "labels": json.dumps(labels, sort_keys=True),
        "annotations": json.dumps(annotations, sort_keys=True),
        "starts_at": at,
        "fire_at": at + policy.hold_down,
        "ends_at": None,
        "updated_at": at,
    }


# ---------------------------------------------------------------------- delivery


def promote(engine: Engine, source: str, now: datetime) -> int:
    """Pending alerts whose hold-down has passed start firing; returns how many."""
    with engine.connect() as conn:
        due = conn.execute(
            select(_ALERTS.c.id)
            .where(_ALERTS.c.source == source)
            .where(_ALERTS.c.state == PENDING)
            .where(_ALERTS.c.fire_at <= now)
        ).all()
    if not due:
        return 0
    with engine.connect() as conn:
        conn.execution_options(**{db.WRITE_TRANSACTION: True})
        with conn.begin():
            result = conn.execute(
                _ALERTS.update()
                .where(_ALERTS.c.id.in_([row.id for row in due]))
                .where(_ALERTS.c.state == PENDING)  # the writer may have closed it meanwhile
                .values(state=FIRING, updated_at=now)
            )
            return result.rowcount


def prune(engine: Engine, source: str, before: datetime) -> int:
    """Delete this source's alerts that ended before `before` (with their delivery rows)."""
    with engine.connect() as conn:
        conn.execution_options(**{db.WRITE_TRANSACTION: True})
        with conn.begin():
            ended = (
                select(_ALERTS.c.id)
                .where(_ALERTS.c.source == source)
                .where(_ALERTS.c.state.in_((RESOLVED, CANCELLED)))
                .where(_ALERTS.c.updated_at < before)
            )
            conn.execute(delete(_DELIVERIES).where(_DELIVERIES.c.alert_id.in_(ended)))
            result = conn.execute(delete(_ALERTS).where(_ALERTS.c.id.in_(ended)))
            return result.rowcount


def _outstanding(receiver: str, source: str, now: datetime, resend: timedelta | None) -> Any:
    """The query of (alert, delivery) pairs the receiver has not acknowledged yet."""
    d = _DELIVERIES
    joined = _ALERTS.outerjoin(d, and_(d.c.alert_id == _ALERTS.c.id, d.c.receiver == receiver))
    not_firing = or_(d.c.delivered.is_(None), d.c.delivered != FIRING)
    if resend is not None:
        not_firing = or_(not_firing, d.c.last_sent <= now - resend)
    return joined, and_(
        _ALERTS.c.source == source,
        or_(
            and_(_ALERTS.c.state == FIRING, not_firing),
            and_(
                _ALERTS.c.state == RESOLVED,
                _ALERTS.c.ends_at >= now - RESOLVED_DELIVERY_WINDOW,
                or_(d.c.delivered.is_(None), d.c.delivered != RESOLVED),
            ),
        ),
    )


def due(
    engine: Engine,
    source: str,
    receiver: str,
    now: datetime,
    *,
    resend: timedelta | None = None,
    limit: int = 100,
) -> list[Notification]:
    """What `receiver` must be sent now: unacknowledged phases whose back-off has passed and,
    with `resend`, firing alerts last sent longer ago than that (Alertmanager expects it)."""
    joined, outstanding = _outstanding(receiver, source, now, resend)
    d = _DELIVERIES
    query = (
        select(
            _ALERTS.c.id,
            _ALERTS.c.key,
            _ALERTS.c.state,
            _ALERTS.c.labels,
            _ALERTS.c.annotations,
            _ALERTS.c.starts_at,
            _ALERTS.c.ends_at,
            d.c.delivered,
            d.c.attempts,
        )
        .select_from(joined)
        .where(outstanding)
        .where(or_(d.c.next_attempt.is_(None), d.c.next_attempt <= now))
        .order_by(_ALERTS.c.id)
        .limit(limit)
    )
    with engine.connect() as conn:
        return [
            Notification(
                alert_id=row.id,
                key=row.key,
                phase=row.state,
                labels=_loads(row.labels),
                annotations=_loads(row.annotations),
                starts_at=row.starts_at,
                ends_at=row.ends_at,
                delivered=row.delivered or "",
                attempts=row.attempts or 0,
            )
            for row in conn.execute(query)
        ]


def pending_count(engine: Engine, source: str, receivers: Sequence[str], now: datetime) -> int:
    """Notifications not yet acknowledged, summed over receivers (periodic re-sends aside)."""
    total = 0
    with engine.connect() as conn:
        for receiver in receivers:
            joined, outstanding = _outstanding(receiver, source, now, None)
            total += conn.execute(
                select(func.count()).select_from(joined).where(outstanding)
            ).scalar_one()
    return total


def backoff(attempts: int, initial: float, cap: float) -> float:
    """Seconds before attempt `attempts + 1`: doubling from `initial`, at most `cap`."""
    return float(min(cap, initial * 2 ** min(max(attempts - 1, 0), 32)))


def record(
    engine: Engine,
    receiver: str,
    outcomes: Sequence[tuple[Notification, str | None]],
    now: datetime,
    *,
    retry_initial: float,
    retry_max: float,
) -> None:
    """Store each notification's outcome (None = acknowledged, else the error) in one write."""
    if not outcomes:
        return
    rows: list[dict[str, Any]] = []
    for note, error in outcomes:
        if error is None:
            rows.append(
                {
                    "alert_id": note.alert_id,
                    "receiver": receiver,
                    "delivered": note.phase,
                    "attempts": 0,
                    "next_attempt": None,
                    "last_sent": now,
                    "last_error": "",
                }
            )
        else:
            attempts = note.attempts + 1
            wait = backoff(attempts, retry_initial, retry_max)
            rows.append(
                {
                    "alert_id": note.alert_id,
                    "receiver": receiver,
                    "delivered": note.delivered,
                    "attempts": attempts,
                    "next_attempt": now + timedelta(seconds=wait),
                    "last_sent": None,
                    "last_error": _clean(error, REASON_LEN),
                }
            )
    ids = [note.alert_id for note, _ in outcomes]
    with engine.connect() as conn:
        conn.execution_options(**{db.WRITE_TRANSACTION: True})
        with conn.begin():
            last_sent: dict[int, datetime | None] = {}
            for chunk in _chunks(ids):
                for old in conn.execute(
                    select(_DELIVERIES.c.alert_id, _DELIVERIES.c.last_sent)
                    .where(_DELIVERIES.c.receiver == receiver)
                    .where(_DELIVERIES.c.alert_id.in_(chunk))
                ):
                    last_sent[old.alert_id] = old.last_sent
                conn.execute(
                    delete(_DELIVERIES)
                    .where(_DELIVERIES.c.receiver == receiver)
                    .where(_DELIVERIES.c.alert_id.in_(chunk))
                )
            for values in rows:
                if values["last_sent"] is None:  # a failure keeps the last success's time
                    values["last_sent"] = last_sent.get(values["alert_id"])
            conn.execute(insert(_DELIVERIES), rows)


# ---------------------------------------------------------------------- views


def list_alerts(
    engine: Engine, state: str | None = None, domain: str | None = None, limit: int = 200
) -> list[AlertView]:
    """Alerts, most recently changed first, each with its per-receiver delivery state."""
    query = select(
        _ALERTS.c.id,
        _ALERTS.c.key,
        _ALERTS.c.alertname,
        _ALERTS.c.state,
        _ALERTS.c.labels,
        _ALERTS.c.annotations,
        _ALERTS.c.starts_at,
        _ALERTS.c.fire_at,
        _ALERTS.c.ends_at,
        _VMS.c.name.label("domain"),
        _VMS.c.key.label("vm_key"),
    ).join(_VMS, _VMS.c.id == _ALERTS.c.vm_id)
    if state is not None:
        query = query.where(_ALERTS.c.state == state)
    if domain is not None:
        query = query.where(_VMS.c.name == domain)
    query = query.order_by(_ALERTS.c.updated_at.desc(), _ALERTS.c.id.desc()).limit(
        max(0, min(limit, 10_000))
    )
    with engine.connect() as conn:
        rows = conn.execute(query).all()
        deliveries: dict[int, list[DeliveryView]] = {}
        for chunk in _chunks([row.id for row in rows]):
            for d in conn.execute(
                select(_DELIVERIES)
                .where(_DELIVERIES.c.alert_id.in_(chunk))
                .order_by(_DELIVERIES.c.receiver)
            ):
                deliveries.setdefault(d.alert_id, []).append(
                    DeliveryView(
                        receiver=d.receiver,
                        delivered=d.delivered,
                        attempts=d.attempts,
                        last_sent=d.last_sent,
                        next_attempt=d.next_attempt,
                        last_error=d.last_error,
                    )
                )
    views = []
    for row in rows:
        labels = _loads(row.labels)
        views.append(
            AlertView(
                id=row.id,
                key=row.key,
                alertname=row.alertname,
                state=row.state,
                domain=row.domain,
                vm_key=row.vm_key,
                severity=labels.get("severity", ""),
                starts_at=row.starts_at,
                fire_at=row.fire_at,
                ends_at=row.ends_at,
                labels=labels,
                annotations=_loads(row.annotations),
                deliveries=tuple(deliveries.get(row.id, ())),
            )
        )
    return views
