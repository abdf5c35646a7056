"""The [alerting] section: defaults, validation with the key named, secrets out of repr."""

from __future__ import annotations

from typing import Any

import pytest

from collector.config import AlertingConfig, ConfigError, from_dict


def alerting(**keys: Any) -> AlertingConfig:
    return from_dict({"alerting": keys}).alerting


def test_defaults() -> None:
    a = alerting()
    assert a == AlertingConfig()
    assert (a.alertmanager_urls, a.webhook_url, a.alert_on) == ((), "", ("down",))
    assert (a.hold_down, a.resend_interval, a.retry_backoff_max) == (60.0, 60.0, 300.0)


def test_full_section() -> None:
    a = alerting(
        alertmanager_urls=["http://am1:9093", "https://am2.example/prefix/"],
        webhook_url="https://hooks.example/x?token=t",
        webhook_secret="k",
        alert_on=["down", "late"],
        hold_down="30s",
        resend_interval="2m",
        timeout="5s",
        retry_backoff="500ms",
        retry_backoff_max="1m",
    )
    assert a.alertmanager_urls == ("http://am1:9093", "https://am2.example/prefix/")
    assert a.alert_on == ("down", "late")
    assert (a.hold_down, a.resend_interval, a.timeout) == (30.0, 120.0, 5.0)
    assert (a.retry_backoff, a.retry_backoff_max) == (0.5, 60.0)
    assert "token" not in repr(a)
    assert "'k'" not in repr(a)


@pytest.mark.parametrize(
    ("keys", "where"),
    [
        ({"alertmanager_urls": "http://am:9093"}, "alerting.alertmanager_urls"),
        ({"alertmanager_urls": ["am:9093"]}, "alerting.alertmanager_urls[0]"),
        ({"webhook_url": "ftp://x"}, "alerting.webhook_url"),
        ({"webhook_secret": "s"}, "alerting.webhook_secret"),
        ({"alert_on": ["gone"]}, "alerting.alert_on"),
        ({"alert_on": []}, "alerting.alert_on"),
        ({"alert_on": [{"x": 1}]}, "alerting.alert_on"),
        ({"hold_down": "soon"}, "alerting.hold_down"),
        ({"resend": "1m"}, "alerting.resend"),
    ],
)
def test_errors_name_the_key(keys: dict[str, Any], where: str) -> None:
    with pytest.raises(ConfigError) as error:
        alerting(**keys)
    assert error.value.key == where
