"""Where guestwatch's own alerts go: Alertmanager (API v2) and a signed JSON webhook.

A receiver turns due notifications into HTTP requests and reports, per notification, None
(acknowledged: a 2xx) or a short error. Response bodies are never read: a receiver is not
trusted to answer briefly. Secrets and URL credentials never appear in names or errors.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Final, Protocol
from urllib.parse import urlsplit

import httpx

from storage.alerts import Notification

SIGNATURE_HEADER: Final = "X-Guestwatch-Signature"
IDEMPOTENCY_HEADER: Final = "Idempotency-Key"
WEBHOOK_VERSION: Final = "1"
#: Alertmanager considers a firing alert resolved at `endsAt` unless re-sent before: like
#: Prometheus, announce four re-send intervals, so that a few lost re-sends change nothing.
ENDS_AT_RESENDS: Final = 4


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def display_url(url: str) -> str:
    """scheme://host[:port]/path: no credentials, no query (it may carry a token)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


class Receiver(Protocol):
    #: Stable name: the delivery state's key in the database and the metrics' `receiver` label.
    name: str
    #: Re-send firing alerts this often (Alertmanager), or None (the webhook: once per phase).
    resend: timedelta | None
    #: Notifications per call.
    batch: int

    async def send(
        self, client: httpx.AsyncClient, notes: Sequence[Notification], now: datetime
    ) -> list[str | None]: ...


async def _post(
    client: httpx.AsyncClient, url: str, body: bytes, headers: dict[str, str], deadline: float
) -> str | None:
    """POST and judge by the status line alone; None on 2xx, else a short reason."""
    try:
        async with asyncio.timeout(deadline):
            async with client.stream("POST", url, content=body, headers=headers) as response:
                if 200 <= response.status_code < 300:
                    return None
                return f"HTTP {response.status_code}"
    except TimeoutError:
        return "timeout"
    except httpx.TimeoutException:
        return "timeout"
    except httpx.HTTPError as exc:
        return type(exc).__name__


class Alertmanager:
    """One Alertmanager (each member of an HA pair is its own receiver): POST /api/v2/alerts.

    Alertmanager deduplicates by label set, so re-sending an alert with the same labels and
    `startsAt` (after a crash, or as the periodic re-send) never shows it twice.
    """

    batch = 64

    def __init__(self, url: str, *, resend: float, timeout: float) -> None:
        self.url = url.rstrip("/") + "/api/v2/alerts"
        self.name = f"alertmanager {display_url(url.rstrip('/'))}"
        self.resend: timedelta | None = timedelta(seconds=resend)
        self.timeout = timeout

    def payload(self, note: Notification, now: datetime) -> dict[str, Any]:
        assert self.resend is not None
        ends = note.ends_at if note.phase == "resolved" else now + ENDS_AT_RESENDS * self.resend
        return {
            "labels": note.labels,
            "annotations": note.annotations,
            "startsAt": _iso(note.starts_at),
            "endsAt": _iso(ends or now),
        }

    async def send(
        self, client: httpx.AsyncClient, notes: Sequence[Notification], now: datetime
    ) -> list[str | None]:
        body = json.dumps([self.payload(note, now) for note in notes]).encode()
        error = await _post(
            client, self.url, body, {"Content-Type": "application/json"}, self.timeout
        )
        return [error] * len(notes)


class Webhook:
    """A JSON POST per alert and phase, with an idempotency key and an optional HMAC.

    The body is documented in the README; `X-Guestwatch-Signature: sha256=<hex>` is the
    HMAC-SHA256 of the raw body under the shared secret.
    """

    name = "webhook"
    resend: timedelta | None = None
    batch = 16

    def __init__(self, url: str, *, secret: str, timeout: float) -> None:
        self.url = url
        self._secret = secret.encode()
        self.timeout = timeout

    def __repr__(self) -> str:  # never the secret, never the URL's token
        return f"Webhook({display_url(self.url)})"

    @staticmethod
    def body(note: Notification, now: datetime) -> dict[str, Any]:
        return {
            "version": WEBHOOK_VERSION,
            "id": note.idempotency_key,
            "alert_key": note.key,
            "status": note.phase,
            "alertname": note.labels.get("alertname", ""),
            "labels": note.labels,
            "annotations": note.annotations,
            "startsAt": _iso(note.starts_at),
            "endsAt": None if note.ends_at is None else _iso(note.ends_at),
            "sentAt": _iso(now),
        }

    def sign(self, body: bytes) -> str:
        return "sha256=" + hmac.new(self._secret, body, hashlib.sha256).hexdigest()

    async def send(
        self, client: httpx.AsyncClient, notes: Sequence[Notification], now: datetime
    ) -> list[str | None]:
        results: list[str | None] = []
        for note in notes:
            body = json.dumps(self.body(note, now), sort_keys=True).encode()
            headers = {
                "Content-Type": "application/json",
                IDEMPOTENCY_HEADER: note.idempotency_key,
            }
            if self._secret:
                headers[SIGNATURE_HEADER] = self.sign(body)
            results.append(await _post(client, self.url, body, headers, self.timeout))
        return results


def verify_signature(secret: str, body: bytes, header: str) -> bool:
    """What a receiver does: constant-time check of `X-Guestwatch-Signature`."""
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header)
