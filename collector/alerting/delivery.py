"""The outbox sender: one asyncio task delivering due alerts to every receiver.

Each tick promotes alerts past their hold-down, then, for every receiver concurrently, sends
what is due and records the outcome. Delivery is at-least-once (a crash between a receiver's
2xx and the database write re-sends); receivers deduplicate: Alertmanager by labels, the
webhook by idempotency key. Database work runs in threads, HTTP with bounded timeouts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import httpx

from collector.alerting.receivers import Receiver
from collector.config import AlertingConfig
from storage import alerts
from storage.repository import Store

log = logging.getLogger(__name__)
# httpx logs every request's full URL at INFO: a webhook URL may carry a token, and a re-send
# every minute is no news. Failures are logged here, without the URL.
for _noisy in ("httpx", "httpcore"):
    logging.getLogger(_noisy).setLevel(logging.WARNING)

#: Seconds between ticks: how soon a new or retried alert is picked up.
TICK_SECONDS = 1.0
#: Seconds between deletions of long-ended alerts (storage.alerts.RETENTION).
PRUNE_SECONDS = 3600.0


class Delivery:
    """Delivers the outbox of one guestwatch instance (`source`) to its receivers.

    Runs without receivers too: it still moves alerts past their hold-down to `firing` (for
    `guestwatch alerts`) and prunes old ones.
    """

    def __init__(
        self,
        store: Store,
        config: AlertingConfig,
        source: str,
        receivers: Sequence[Receiver],
        *,
        tick: float = TICK_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.config = config
        self.source = source
        self.receivers = list(receivers)
        self.tick = tick
        self.clock = clock
        self.sent: dict[str, int] = {r.name: 0 for r in self.receivers}
        self.failed: dict[str, int] = {r.name: 0 for r in self.receivers}
        self.pending = 0
        self._task: asyncio.Task[None] | None = None
        self._pruned_at = float("-inf")
        self._client: httpx.AsyncClient | None = None

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    async def start(self) -> None:
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(self.config.timeout), follow_redirects=False
        )
        self._task = asyncio.create_task(self._run(), name="alert-delivery")

    async def stop(self) -> None:
        """Stop between ticks or mid-send: the outbox keeps whatever was not acknowledged."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _run(self) -> None:
        while True:
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # a database hiccup: the next tick retries
                log.exception("alert delivery failed; retrying")
            await asyncio.sleep(self.tick)

    async def run_once(self) -> None:
        """One tick: promote, deliver to every receiver, refresh the pending gauge."""
        engine = self.store.engine
        await asyncio.to_thread(alerts.promote, engine, self.source, self._now())
        if self.clock() - self._pruned_at >= PRUNE_SECONDS:
            self._pruned_at = self.clock()
            await asyncio.to_thread(
                alerts.prune, engine, self.source, self._now() - alerts.RETENTION
            )
        await asyncio.gather(*(self._deliver(receiver) for receiver in self.receivers))
        names = [receiver.name for receiver in self.receivers]
        self.pending = await asyncio.to_thread(
            alerts.pending_count, engine, self.source, names, self._now()
        )

    async def _deliver(self, receiver: Receiver) -> None:
        now = self._now()
        notes = await asyncio.to_thread(
            alerts.due,
            self.store.engine,
            self.source,
            receiver.name,
            now,
            resend=receiver.resend,
            limit=receiver.batch,
        )
        if not notes:
            return
        client = self._client
        if client is None:
            client = self._client = httpx.AsyncClient(timeout=httpx.Timeout(self.config.timeout))
        errors = await receiver.send(client, notes, now)
        outcomes = list(zip(notes, errors, strict=True))
        ok = sum(1 for error in errors if error is None)
        self.sent[receiver.name] += ok
        self.failed[receiver.name] += len(errors) - ok
        for note, error in outcomes:
            if error is not None:
                log.warning(
                    "%s: %s %s not delivered (%s; attempt %d)",
                    receiver.name,
                    note.labels.get("alertname", "alert"),
                    note.phase,
                    error,
                    note.attempts + 1,
                )
        await asyncio.to_thread(
            alerts.record,
            self.store.engine,
            receiver.name,
            outcomes,
            self._now(),
            retry_initial=self.config.retry_backoff,
            retry_max=self.config.retry_backoff_max,
        )
