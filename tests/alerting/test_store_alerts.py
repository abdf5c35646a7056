"""The outbox in the store: alerts open and close with liveness transitions, in one transaction."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from storage import alerts
from storage.alerts import AlertPolicy
from storage.records import HeartbeatSeen, LivenessChanged
from storage.repository import Store
from tests.storage.conftest import T0, vm

SRC = "host-a"
WEB = vm("web-1", uuid="0f6c1e1e-0000-4000-8000-000000000001")
DB = vm("db-1")


def at(seconds: float) -> datetime:
    return datetime.fromtimestamp(T0 + seconds, UTC)


def change(ref: object, t: float, old: str, new: str) -> LivenessChanged:
    return LivenessChanged(vm=ref, at=T0 + t, old=old, new=new, reason="3 heartbeats missed")  # type: ignore[arg-type]


def policy(hold_down: float = 60.0, alert_on: tuple[str, ...] = ("down",)) -> AlertPolicy:
    return AlertPolicy(source=SRC, alert_on=alert_on, hold_down=hold_down)


def states(store: Store) -> list[tuple[str, str, str]]:
    return [(a.domain, a.alertname, a.state) for a in reversed(store.alerts())]


def test_down_opens_pending_fires_after_hold_down_and_resolves_on_up(store: Store) -> None:
    store.set_alerting(policy(60))
    store.write([HeartbeatSeen(WEB, T0), change(WEB, 10, "late", "down")])
    [alert] = store.alerts()
    assert (alert.state, alert.alertname, alert.severity) == (
        "pending",
        "GuestAgentDown",
        "critical",
    )
    assert alert.starts_at == at(10)
    assert alert.fire_at == at(70)
    assert alert.labels == {
        "alertname": "GuestAgentDown",
        "severity": "critical",
        "domain": "web-1",
        "hypervisor": "host-a",
        "protocol": "qga",
        "uuid": WEB.uuid,
    }
    assert alert.annotations["last_heartbeat"] == at(0).isoformat()
    assert "web-1" in alert.annotations["summary"]

    assert alerts.promote(store.engine, SRC, at(69)) == 0
    assert alerts.promote(store.engine, "other-host", at(70)) == 0  # not its alert
    assert alerts.promote(store.engine, SRC, at(70)) == 1
    assert store.alerts(state="firing")[0].id == alert.id

    store.write([change(WEB, 100, "down", "up")])
    [done] = store.alerts()
    assert (done.state, done.ends_at) == ("resolved", at(100))


def test_flap_within_hold_down_is_cancelled_and_counted(store: Store) -> None:
    p = policy(60)
    store.set_alerting(p)
    store.write([change(WEB, 0, "late", "down")])
    store.write([change(WEB, 30, "down", "up")])
    assert states(store) == [("web-1", "GuestAgentDown", "cancelled")]
    assert p.flaps == 1
    # Cancelled alerts are never promoted nor delivered.
    assert alerts.promote(store.engine, SRC, at(1000)) == 0
    assert alerts.due(store.engine, SRC, "webhook", at(1000)) == []


def test_down_and_up_in_one_batch(store: Store) -> None:
    p = policy(60)
    store.set_alerting(p)
    store.write([change(WEB, 0, "late", "down"), change(WEB, 5, "down", "up")])
    assert states(store) == [("web-1", "GuestAgentDown", "cancelled")]
    assert p.flaps == 1
    # With no hold-down the same batch resolves it: the receiver still hears about it.
    store.set_alerting(policy(0))
    store.write([change(DB, 0, "late", "down"), change(DB, 5, "down", "up")])
    assert states(store)[-1] == ("db-1", "GuestAgentDown", "resolved")
    [note] = alerts.due(store.engine, SRC, "webhook", at(6))
    assert (note.phase, note.starts_at, note.ends_at) == ("resolved", at(0), at(5))


def test_gone_never_alerts_and_resolves_a_firing_alert(store: Store) -> None:
    p = policy(10)
    store.set_alerting(p)
    store.write([change(WEB, 0, "up", "gone")])
    assert store.alerts() == []
    store.write([change(WEB, 0, "late", "down"), change(DB, 8, "late", "down")])
    alerts.promote(store.engine, SRC, at(10))
    store.write([change(WEB, 50, "down", "gone"), change(DB, 12, "down", "gone")])
    assert sorted(states(store)) == [
        ("db-1", "GuestAgentDown", "cancelled"),  # gone within hold-down: nothing to clear
        ("web-1", "GuestAgentDown", "resolved"),  # was firing: Alertmanager gets endsAt
    ]
    assert p.flaps == 0  # a VM that went away did not flap


def test_late_then_down_with_late_alerts(store: Store) -> None:
    store.set_alerting(policy(0, ("late", "down")))
    store.write([change(WEB, 0, "up", "late")])
    store.write([change(WEB, 10, "late", "down")])
    assert states(store) == [
        ("web-1", "GuestAgentLate", "resolved"),
        ("web-1", "GuestAgentDown", "pending"),
    ]
    late = store.alerts(state="resolved")[0]
    assert (late.severity, late.ends_at) == ("warning", at(10))


def test_late_does_not_alert_by_default_and_no_policy_no_alerts(tmp_path: object) -> None:
    store = Store("sqlite://")
    store.upgrade()
    store.write([change(WEB, 0, "late", "down")])
    assert store.alerts() == []  # no policy: the store records no alerts
    store.set_alerting(policy(0))
    store.write([change(DB, 0, "up", "late")])
    assert store.alerts() == []
    store.close()


def test_still_down_after_restart_keeps_the_same_alert(store: Store) -> None:
    store.set_alerting(policy(0))
    store.write([change(WEB, 0, "late", "down")])
    alerts.promote(store.engine, SRC, at(0))
    # guestwatch restarts: the VM comes back as unknown → down, the page must not re-open.
    store.write([change(WEB, 100, "unknown", "down")])
    [alert] = store.alerts()
    assert (alert.state, alert.starts_at) == ("firing", at(0))


def test_closing_is_decided_against_the_row_promoted_meanwhile(store: Store) -> None:
    """The writer saw `pending`, the delivery task promoted it: it must resolve, not cancel."""
    store.set_alerting(policy(60))
    store.write([change(WEB, 0, "late", "down")])
    alerts.promote(store.engine, SRC, at(60))
    # A transition stamped inside the hold-down but written after the promotion.
    store.write([change(WEB, 30, "down", "up")])
    assert states(store) == [("web-1", "GuestAgentDown", "resolved")]


def test_due_record_resend_and_capped_backoff(store: Store) -> None:
    store.set_alerting(policy(0))
    store.write([change(WEB, 0, "late", "down")])
    alerts.promote(store.engine, SRC, at(0))
    resend = timedelta(seconds=60)
    [note] = alerts.due(store.engine, SRC, "am", at(1), resend=resend)
    assert (note.phase, note.delivered, note.attempts) == ("firing", "", 0)
    assert note.idempotency_key == f"{note.key}:firing"
    assert alerts.pending_count(store.engine, SRC, ["am", "webhook"], at(1)) == 2

    # Failures back off 1, 2, 4, ... capped at 5 seconds.
    now = at(1)
    waits = []
    for _ in range(5):
        [note] = alerts.due(store.engine, SRC, "am", now, resend=resend)
        alerts.record(store.engine, "am", [(note, "HTTP 500")], now, retry_initial=1, retry_max=5)
        assert alerts.due(store.engine, SRC, "am", now, resend=resend) == []
        [view] = store.alerts()[0].deliveries
        assert view.last_error == "HTTP 500"
        assert view.next_attempt is not None
        waits.append((view.next_attempt - now).total_seconds())
        now = view.next_attempt
    assert waits == [1, 2, 4, 5, 5]

    alerts.record(store.engine, "am", [(note, None)], now, retry_initial=1, retry_max=5)
    [view] = store.alerts()[0].deliveries
    assert (view.delivered, view.attempts, view.last_sent, view.last_error) == (
        "firing",
        0,
        now,
        "",
    )
    assert alerts.pending_count(store.engine, SRC, ["am"], now) == 0
    assert alerts.due(store.engine, SRC, "am", now + resend / 2, resend=resend) == []
    # Alertmanager wants re-sends while firing; the webhook does not.
    assert len(alerts.due(store.engine, SRC, "am", now + resend, resend=resend)) == 1
    alerts.record(store.engine, "webhook", [(note, None)], now, retry_initial=1, retry_max=5)
    assert alerts.due(store.engine, SRC, "webhook", now + 10 * resend) == []

    # Resolution: due again to both, once.
    store.write([change(WEB, 500, "down", "up")])
    later = at(501)
    for receiver in ("am", "webhook"):
        [res] = alerts.due(store.engine, SRC, receiver, later, resend=resend)
        assert (res.phase, res.ends_at, res.delivered) == ("resolved", at(500), "firing")
        alerts.record(store.engine, receiver, [(res, None)], later, retry_initial=1, retry_max=5)
        assert alerts.due(store.engine, SRC, receiver, later + resend, resend=resend) == []


def test_old_resolved_alerts_are_not_sent_to_a_new_receiver(store: Store) -> None:
    store.set_alerting(policy(0))
    store.write([change(WEB, 0, "late", "down")])
    alerts.promote(store.engine, SRC, at(0))
    store.write([change(WEB, 10, "down", "up")])
    assert len(alerts.due(store.engine, SRC, "new", at(11))) == 1
    late = at(10) + alerts.RESOLVED_DELIVERY_WINDOW + timedelta(seconds=1)
    assert alerts.due(store.engine, SRC, "new", late) == []


def test_alerts_view_filters(store: Store) -> None:
    store.set_alerting(policy(0))
    store.write([change(WEB, 0, "late", "down"), change(DB, 1, "late", "down")])
    store.write([change(DB, 2, "down", "up")])
    assert {a.domain for a in store.alerts()} == {"web-1", "db-1"}
    assert [a.domain for a in store.alerts(domain="db-1")] == ["db-1"]
    assert [a.domain for a in store.alerts(state="pending")] == ["web-1"]
    assert len(store.alerts(limit=1)) == 1
    assert store.alerts(domain="nope") == []


def test_hostile_domain_text_is_bounded(store: Store) -> None:
    store.set_alerting(policy(0))
    ref = vm("x" * 300 + "\x00")
    store.write([change(ref, 0, "late", "down")])
    [alert] = store.alerts()
    assert len(alert.labels["domain"]) == 255
    assert "\x00" not in alert.labels["domain"]


def test_prune_deletes_only_long_ended_alerts_of_this_source(store: Store) -> None:
    store.set_alerting(policy(0))
    store.write([change(WEB, 0, "late", "down"), change(DB, 0, "late", "down")])
    alerts.promote(store.engine, SRC, at(0))
    [note, _] = alerts.due(store.engine, SRC, "am", at(0))
    alerts.record(store.engine, "am", [(note, None)], at(0), retry_initial=1, retry_max=1)
    store.write([change(WEB, 10, "down", "up")])
    assert alerts.prune(store.engine, "other-host", at(100)) == 0
    assert alerts.prune(store.engine, SRC, at(10)) == 0  # ended at 10, not before
    assert alerts.prune(store.engine, SRC, at(11)) == 1
    assert states(store) == [("db-1", "GuestAgentDown", "firing")]  # still open: kept
