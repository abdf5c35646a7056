"""guestwatch's own liveness alerts: policy, receivers and the outbox sender, from config.

The alerts themselves are opened and closed by the store in the liveness events' transaction
(`storage/alerts.py`); this package delivers them. See the README's "Alerting" section.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from collector.alerting.delivery import TICK_SECONDS, Delivery
from collector.alerting.receivers import Alertmanager, Receiver, Webhook
from collector.config import Config
from storage.alerts import AlertPolicy
from storage.repository import Store

__all__ = ["Alerting", "Alertmanager", "Delivery", "Receiver", "Webhook", "receivers_of"]


def receivers_of(config: Config) -> list[Receiver]:
    a = config.alerting
    found: list[Receiver] = [
        Alertmanager(url, resend=a.resend_interval, timeout=a.timeout)
        for url in a.alertmanager_urls
    ]
    if a.webhook_url:
        found.append(Webhook(a.webhook_url, secret=a.webhook_secret, timeout=a.timeout))
    return found


class Alerting:
    """Hooks the alert policy into the store and runs the delivery task."""

    def __init__(self, config: Config, store: Store, *, tick: float | None = None) -> None:
        source = config.service.hypervisor
        self.policy = AlertPolicy(
            source=source,
            alert_on=config.alerting.alert_on,
            hold_down=config.alerting.hold_down,
        )
        store.set_alerting(self.policy)
        self.delivery = Delivery(
            store, config.alerting, source, receivers_of(config), tick=tick or TICK_SECONDS
        )

    async def start(self) -> None:
        await self.delivery.start()

    async def stop(self) -> None:
        await self.delivery.stop()

    def metrics(self) -> Iterator[Metric]:
        """guestwatch_alerts_* and guestwatch_agent_flaps_total (labels bounded by config)."""
        pending = GaugeMetricFamily(
            "guestwatch_alerts_pending",
            "Alert notifications not yet acknowledged by their receiver (outbox size).",
            labels=[],
        )
        pending.add_metric([], self.delivery.pending)
        yield pending
        sent = CounterMetricFamily(
            "guestwatch_alerts_sent",
            "Alert notifications acknowledged, by receiver (re-sends included).",
            labels=["receiver"],
        )
        failed = CounterMetricFamily(
            "guestwatch_alerts_failed",
            "Failed attempts to deliver an alert notification, by receiver (retried).",
            labels=["receiver"],
        )
        for name in self.delivery.sent:
            sent.add_metric([name], self.delivery.sent[name])
            failed.add_metric([name], self.delivery.failed[name])
        yield sent
        yield failed
        flaps = CounterMetricFamily(
            "guestwatch_agent_flaps",
            "Agents back up within the alert hold-down: alerts that were never sent.",
            labels=[],
        )
        flaps.add_metric([], self.policy.flaps)
        yield flaps
