"""The outbox sender under failures: 500s, timeouts, a crash between a receiver's 2xx and the
database write, an HA pair with one member down. A local HTTP receiver plays the endpoint; the
clock is stepped by hand so back-off is checked without sleeping."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.core import Metric

from collector.alerting import Alerting, Delivery, Webhook, receivers_of
from collector.alerting import delivery as delivery_module
from collector.alerting.receivers import verify_signature
from collector.config import Config, from_dict
from storage import alerts
from storage.records import LivenessChanged
from storage.repository import Store
from tests.alerting.receiver import Script, serve
from tests.storage.conftest import T0, vm

SECRET = "s3cret-never-logged"
WEB = vm("web-1", hypervisor="testhv")


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def config(**alerting: Any) -> Config:
    settings = {"hold_down": "1s", "retry_backoff": "1s", "retry_backoff_max": "4s"}
    settings.update(alerting)
    return from_dict({"service": {"hypervisor": "testhv"}, "alerting": settings})


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(f"sqlite:///{tmp_path / 'gw.db'}")
    s.upgrade()
    yield s
    s.close()


def down(store: Store, t: float) -> None:
    store.write([LivenessChanged(WEB, T0 + t, "late", "down", "3 heartbeats missed")])


def up(store: Store, t: float) -> None:
    store.write([LivenessChanged(WEB, T0 + t, "down", "up", "heartbeat answered")])


def make(store: Store, cfg: Config, clock: Clock) -> tuple[Alerting, Delivery]:
    alerting = Alerting(cfg, store)
    alerting.delivery.clock = clock
    return alerting, alerting.delivery


def metric_values(alerting: Alerting) -> dict[tuple[str, tuple[str, ...]], float]:
    out: dict[tuple[str, tuple[str, ...]], float] = {}
    family: Metric
    for family in alerting.metrics():
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.values())))] = sample.value
    return out


async def test_webhook_500s_then_delivered_once_signed_with_a_stable_key(store: Store) -> None:
    script = Script([(500, 0), (500, 0), (200, 0)])
    clock = Clock()
    with serve(script) as url:
        alerting, delivery = make(
            store, config(webhook_url=f"{url}/hook?token=abc", webhook_secret=SECRET), clock
        )
        await delivery.start()
        try:
            await delivery.stop()  # drive ticks by hand below, not from the task
            down(store, 0)
            await delivery.run_once()
            assert script.received == []  # hold-down: nothing yet
            assert delivery.pending == 0

            clock.now = T0 + 1
            await delivery.run_once()  # promoted, first attempt: 500
            assert len(script.received) == 1
            assert delivery.pending == 1
            await delivery.run_once()  # backing off: nothing sent
            assert len(script.received) == 1
            clock.now += 1
            await delivery.run_once()  # second attempt: 500, next in 2 s
            clock.now += 1
            await delivery.run_once()
            assert len(script.received) == 2
            clock.now += 1
            await delivery.run_once()  # third attempt: 200
            assert len(script.received) == 3
            assert delivery.pending == 0
            clock.now += 600
            await delivery.run_once()  # the webhook gets no re-sends
            assert len(script.received) == 3

            bodies = [r.json() for r in script.received]
            keys = {r.headers["idempotency-key"] for r in script.received}
            assert len(keys) == 1
            assert {b["id"] for b in bodies} == keys
            assert bodies[0]["status"] == "firing"
            assert bodies[0]["alertname"] == "GuestAgentDown"
            assert bodies[0]["labels"]["domain"] == "web-1"
            assert bodies[0]["endsAt"] is None
            for r in script.received:
                assert r.path == "/hook?token=abc"
                assert verify_signature(SECRET, r.body, r.headers["x-guestwatch-signature"])
                assert not verify_signature("wrong", r.body, r.headers["x-guestwatch-signature"])

            up(store, 700)
            await delivery.run_once()
            resolved = script.received[-1]
            assert len(script.received) == 4
            assert resolved.json()["status"] == "resolved"
            assert resolved.json()["endsAt"] == "2023-11-14T22:25:00Z"
            assert resolved.headers["idempotency-key"] != next(iter(keys))
            [view] = store.alerts()
            assert view.state == "resolved"
            assert [(d.receiver, d.delivered) for d in view.deliveries] == [("webhook", "resolved")]
            values = metric_values(alerting)
            assert values[("guestwatch_alerts_sent_total", ("webhook",))] == 2
            assert values[("guestwatch_alerts_failed_total", ("webhook",))] == 2
            assert values[("guestwatch_alerts_pending", ())] == 0
        finally:
            await delivery.stop()


async def test_a_hanging_receiver_times_out_and_is_retried(store: Store) -> None:
    script = Script([(200, 3.0), (200, 0)])
    clock = Clock()
    with serve(script) as url:
        _, delivery = make(store, config(webhook_url=url, timeout="300ms", hold_down="1ms"), clock)
        down(store, 0)
        clock.now = T0 + 1
        await delivery.run_once()
        [view] = store.alerts()
        assert view.deliveries[0].last_error == "timeout"
        assert view.deliveries[0].delivered == ""
        clock.now += 1
        await delivery.run_once()
        [view] = store.alerts()
        assert view.deliveries[0].delivered == "firing"
        await delivery.stop()
    assert len(script.received) == 2
    assert script.received[0].json()["id"] == script.received[1].json()["id"]


async def test_crash_between_ack_and_record_resends_the_same_notification_once(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At-least-once: the receiver sees the same idempotency key twice, never a third time."""
    script = Script()
    clock = Clock()
    with serve(script) as url:
        _, first = make(store, config(webhook_url=url, hold_down="1ms"), clock)
        down(store, 0)
        clock.now = T0 + 1

        def crash(*args: object, **kwargs: object) -> None:
            raise RuntimeError("guestwatch killed before recording the delivery")

        with monkeypatch.context() as patch:
            patch.setattr(delivery_module.alerts, "record", crash)
            with pytest.raises(RuntimeError):
                await first.run_once()
        await first.stop()
        assert len(script.received) == 1

        # guestwatch starts again on the same database.
        _, second = make(store, config(webhook_url=url, hold_down="1ms"), clock)
        await second.run_once()
        await second.run_once()
        clock.now += 3600
        await second.run_once()
        await second.stop()
    assert len(script.received) == 2
    a, b = (r.json() for r in script.received)
    assert a["id"] == b["id"]
    assert a["startsAt"] == b["startsAt"]


async def test_ha_pair_each_member_gets_it_and_one_outage_does_not_block_the_other(
    store: Store,
) -> None:
    good, bad = Script(), Script([(503, 0)])
    clock = Clock()
    with serve(good) as good_url, serve(bad) as bad_url:
        cfg = config(
            alertmanager_urls=[f"http://user:pw@{good_url[7:]}/", bad_url],
            resend_interval="10s",
            hold_down="1ms",
        )
        alerting, delivery = make(store, cfg, clock)
        names = [r.name for r in delivery.receivers]
        assert names == [f"alertmanager {good_url}", f"alertmanager {bad_url}"]  # no password
        down(store, 0)
        clock.now = T0 + 1
        await delivery.run_once()
        assert [r.path for r in good.received] == ["/api/v2/alerts"]
        assert len(bad.received) == 1
        [alert] = good.received[0].json()
        assert alert["labels"]["alertname"] == "GuestAgentDown"
        assert alert["startsAt"] == "2023-11-14T22:13:20Z"
        # Firing: endsAt four re-send intervals ahead, as Prometheus does.
        assert alert["endsAt"] == "2023-11-14T22:14:01Z"
        assert delivery.pending == 1  # the member that is down

        clock.now += 10  # re-send interval: the good one gets the same alert again
        await delivery.run_once()
        assert len(good.received) == 2
        assert good.received[1].json()[0]["startsAt"] == alert["startsAt"]
        values = metric_values(alerting)
        assert values[("guestwatch_alerts_failed_total", (names[1],))] >= 2
        assert values[("guestwatch_alerts_sent_total", (names[0],))] == 2
        await delivery.stop()


async def test_secret_and_url_token_never_logged(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    script = Script([(500, 0)])
    clock = Clock()
    with serve(script) as url:
        cfg = config(webhook_url=f"{url}/x?token=tok3n", webhook_secret=SECRET, hold_down="1ms")
        _, delivery = make(store, cfg, clock)
        down(store, 0)
        clock.now = T0 + 1
        await delivery.run_once()
        await delivery.stop()
    assert "not delivered" in caplog.text
    [receiver] = receivers_of(cfg)
    assert isinstance(receiver, Webhook)
    for text in (caplog.text, repr(receiver), repr(cfg), str(store.alerts())):
        assert SECRET not in text
        assert "tok3n" not in text


async def test_without_receivers_alerts_still_fire_and_old_ones_are_pruned(store: Store) -> None:
    clock = Clock()
    _, delivery = make(store, config(), clock)
    assert delivery.receivers == []
    down(store, 0)
    assert [a.state for a in store.alerts()] == ["pending"]
    clock.now = T0 + 1
    await delivery.run_once()
    assert [a.state for a in store.alerts()] == ["firing"]
    up(store, 10)
    clock.now = T0 + 10 + alerts.RETENTION.total_seconds() - 1
    delivery._pruned_at = float("-inf")
    await delivery.run_once()
    assert [a.state for a in store.alerts()] == ["resolved"]
    clock.now += 2
    await delivery.run_once()  # pruned at most hourly
    assert len(store.alerts()) == 1
    clock.now += delivery_module.PRUNE_SECONDS
    await delivery.run_once()
    assert store.alerts() == []


def test_backoff_doubles_and_is_capped() -> None:
    from storage.alerts import backoff

    assert [backoff(n, 1.0, 30.0) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]
    assert backoff(10_000, 1.0, 30.0) == 30.0
