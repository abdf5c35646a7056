"""The TOML configuration: every key has a default, so an empty file is a valid config.

Validation happens once, at start-up, and every error names the key (`polling.users_interval:
expected a duration such as "10s", got "ten"`), because an operator reading a log line at 3 a.m.
should not have to guess which of forty keys is wrong.
"""

from __future__ import annotations

import os
import re
import socket
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from collector import eventloop

DEFAULT_PORT: Final = 9958
DEFAULT_LISTEN: Final = f"127.0.0.1:{DEFAULT_PORT}"
PROTOCOLS: Final = ("qga", "ovirt", "spice")
MODES: Final = ("persistent", "per-poll")

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@+-]{0,127}$")


class ConfigError(ValueError):
    """An invalid configuration; the message starts with the offending key."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason


def parse_duration(value: object, key: str = "duration") -> float:
    """A number of seconds, or a string such as "500ms", "5s", "2m", "1h"."""
    if isinstance(value, bool):
        raise ConfigError(key, f'expected a duration such as "5s", got {value!r}')
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    else:
        raise ConfigError(key, f'expected a duration such as "5s", got {value!r}')
    if not seconds > 0:
        raise ConfigError(key, f"must be greater than zero, got {value!r}")
    return seconds


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    hypervisor: str
    log_level: str = "info"
    event_loop: str = "auto"


@dataclass(frozen=True, slots=True)
class StorageConfig:
    url: str = "sqlite:///guestwatch.db"


@dataclass(frozen=True, slots=True)
class HttpConfig:
    listen: str = DEFAULT_LISTEN
    web_config: str = ""

    @property
    def host(self) -> str:
        return self.listen.rsplit(":", 1)[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rsplit(":", 1)[1])


@dataclass(frozen=True, slots=True)
class PollingConfig:
    heartbeat_interval: float = 5.0
    users_interval: float = 10.0
    memory_interval: float = 60.0
    filesystems_interval: float = 60.0
    system_interval: float = 120.0
    packages_interval: float = 3600.0
    command_timeout: float = 3.0
    max_reply_bytes: int = 10 * 1024 * 1024
    discovery_interval: float = 30.0
    jitter: float = 0.1  # fraction of each interval


@dataclass(frozen=True, slots=True)
class LivenessConfig:
    late_after: int = 2
    down_after: int = 6


@dataclass(frozen=True, slots=True)
class RetentionConfig:
    """Ages in seconds; None keeps forever. See storage/retention.py."""

    samples: float = 7 * 86400.0
    hourly: float = 90 * 86400.0
    daily: float | None = None
    closed_rows: float | None = None
    events: float | None = None


@dataclass(frozen=True, slots=True)
class TargetConfig:
    name: str
    socket: str
    protocol: str = "qga"
    mode: str = "persistent"
    uuid: str | None = None


@dataclass(frozen=True, slots=True)
class SocketDiscoveryConfig:
    glob: str
    protocol: str = "qga"
    mode: str = "per-poll"


@dataclass(frozen=True, slots=True)
class LibvirtDiscoveryConfig:
    uri: str = ""


@dataclass(frozen=True, slots=True)
class AlertingConfig:
    """guestwatch's own alerts (see collector/alerting): receivers, which states, timing."""

    alertmanager_urls: tuple[str, ...] = ()
    webhook_url: str = field(default="", repr=False)  # may carry a token
    webhook_secret: str = field(default="", repr=False)  # never logged nor stored
    alert_on: tuple[str, ...] = ("down",)
    hold_down: float = 60.0
    resend_interval: float = 60.0
    timeout: float = 10.0
    retry_backoff: float = 1.0
    retry_backoff_max: float = 300.0


@dataclass(frozen=True, slots=True)
class Config:
    service: ServiceConfig
    storage: StorageConfig = field(default_factory=StorageConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    polling: PollingConfig = field(default_factory=PollingConfig)
    liveness: LivenessConfig = field(default_factory=LivenessConfig)
    targets: tuple[TargetConfig, ...] = ()
    socket_discovery: tuple[SocketDiscoveryConfig, ...] = ()
    libvirt: LibvirtDiscoveryConfig = field(default_factory=LibvirtDiscoveryConfig)
    alerting: AlertingConfig = field(default_factory=AlertingConfig)
    retention: RetentionConfig = field(default_factory=RetentionConfig)


class _Section:
    """Reads one table, remembering which keys were used so unknown keys are reported."""

    def __init__(self, data: object, path: str) -> None:
        if not isinstance(data, dict):
            raise ConfigError(path, f"expected a table, got {type(data).__name__}")
        self.data: dict[str, Any] = data
        self.path = path
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def raw(self, name: str, default: object) -> object:
        self.used.add(name)
        return self.data.get(name, default)

    def string(self, name: str, default: str, *, choices: tuple[str, ...] = ()) -> str:
        value = self.raw(name, default)
        if not isinstance(value, str):
            raise ConfigError(self.key(name), f"expected a string, got {value!r}")
        if choices and value not in choices:
            raise ConfigError(self.key(name), f"must be one of {', '.join(choices)}; got {value!r}")
        return value

    def duration(self, name: str, default: float) -> float:
        return parse_duration(self.raw(name, default), self.key(name))

    def integer(self, name: str, default: int, *, minimum: int = 0) -> int:
        value = self.raw(name, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(self.key(name), f"expected an integer, got {value!r}")
        if value < minimum:
            raise ConfigError(self.key(name), f"must be at least {minimum}, got {value}")
        return value

    def number(self, name: str, default: float, *, low: float, high: float) -> float:
        value = self.raw(name, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(self.key(name), f"expected a number, got {value!r}")
        if not low <= value <= high:
            raise ConfigError(self.key(name), f"must be between {low} and {high}, got {value}")
        return float(value)

    def table_list(self, name: str) -> list[_Section]:
        value = self.raw(name, [])
        if not isinstance(value, list):
            raise ConfigError(self.key(name), "expected an array of tables ([[...]])")
        return [_Section(item, f"{self.key(name)}[{i}]") for i, item in enumerate(value)]

    def section(self, name: str) -> _Section:
        return _Section(self.raw(name, {}), self.key(name))

    def finish(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise ConfigError(self.key(unknown[0]), "unknown key")


def _http_url(value: object, key: str) -> str:
    if not isinstance(value, str) or not re.match(r"^https?://[^\s/]+", value):
        raise ConfigError(key, f"expected an http:// or https:// URL, got {value!r}")
    return value


def _alerting(a: _Section) -> AlertingConfig:
    d = AlertingConfig()
    urls = a.raw("alertmanager_urls", [])
    if not isinstance(urls, list):
        raise ConfigError(a.key("alertmanager_urls"), f"expected a list of URLs, got {urls!r}")
    alert_on = a.raw("alert_on", list(d.alert_on))
    if (
        not isinstance(alert_on, list)
        or not alert_on
        or not all(state in ("late", "down") for state in alert_on)
    ):
        raise ConfigError(
            a.key("alert_on"), f'expected ["down"] or ["late", "down"], got {alert_on!r}'
        )
    webhook_url = a.string("webhook_url", "")
    config = AlertingConfig(
        alertmanager_urls=tuple(
            _http_url(u, f"{a.key('alertmanager_urls')}[{i}]") for i, u in enumerate(urls)
        ),
        webhook_url=_http_url(webhook_url, a.key("webhook_url")) if webhook_url else "",
        webhook_secret=a.string("webhook_secret", ""),
        alert_on=tuple(sorted(set(alert_on))),
        hold_down=a.duration("hold_down", d.hold_down),
        resend_interval=a.duration("resend_interval", d.resend_interval),
        timeout=a.duration("timeout", d.timeout),
        retry_backoff=a.duration("retry_backoff", d.retry_backoff),
        retry_backoff_max=a.duration("retry_backoff_max", d.retry_backoff_max),
    )
    if config.webhook_secret and not config.webhook_url:
        raise ConfigError(a.key("webhook_secret"), "set without alerting.webhook_url")
    a.finish()
    return config


def _listen(value: str, key: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(key, f"expected host:port such as {DEFAULT_LISTEN!r}, got {value!r}")
    return value


def _name(value: str, key: str) -> str:
    if not _NAME.match(value):
        raise ConfigError(key, f"not a valid VM name: {value!r}")
    return value


def _mode(section: _Section, protocol: str, default: str) -> str:
    """A spice target holds its channel (presence is the port's open/EOF): persistent only."""
    if protocol == "spice":
        mode = section.string("mode", "persistent", choices=MODES)
        if mode != "persistent":
            raise ConfigError(section.key("mode"), "spice targets hold their channel: persistent")
        return mode
    return section.string("mode", default, choices=MODES)


def from_dict(data: dict[str, Any]) -> Config:
    """Validate a parsed TOML document into a Config."""
    root = _Section(data, "")

    service = root.section("service")
    hypervisor = service.string("hypervisor", "") or socket.gethostname()
    log_level = service.string("log_level", "info", choices=("debug", "info", "warning", "error"))
    event_loop = service.string("event_loop", "auto", choices=eventloop.CHOICES)
    try:
        eventloop.resolve(event_loop)
    except eventloop.LoopUnavailable as exc:
        raise ConfigError(service.key("event_loop"), str(exc)) from None
    service.finish()

    storage = root.section("storage")
    url = storage.string("url", StorageConfig().url)
    if "://" not in url:
        raise ConfigError("storage.url", f"expected a database URL, got {url!r}")
    storage.finish()

    http = root.section("http")
    listen = _listen(http.string("listen", DEFAULT_LISTEN), "http.listen")
    web_config = http.string("web_config", "")
    http.finish()

    p = root.section("polling")
    d = PollingConfig()
    polling = PollingConfig(
        heartbeat_interval=p.duration("heartbeat_interval", d.heartbeat_interval),
        users_interval=p.duration("users_interval", d.users_interval),
        memory_interval=p.duration("memory_interval", d.memory_interval),
        filesystems_interval=p.duration("filesystems_interval", d.filesystems_interval),
        system_interval=p.duration("system_interval", d.system_interval),
        packages_interval=p.duration("packages_interval", d.packages_interval),
        command_timeout=p.duration("command_timeout", d.command_timeout),
        max_reply_bytes=p.integer("max_reply_bytes", d.max_reply_bytes, minimum=4096),
        discovery_interval=p.duration("discovery_interval", d.discovery_interval),
        jitter=p.number("jitter", d.jitter, low=0.0, high=0.5),
    )
    p.finish()

    lv = root.section("liveness")
    late_after = lv.integer("late_after", LivenessConfig().late_after, minimum=1)
    down_after = lv.integer("down_after", LivenessConfig().down_after, minimum=1)
    if down_after <= late_after:
        raise ConfigError("liveness.down_after", "must be greater than liveness.late_after")
    lv.finish()

    targets: list[TargetConfig] = []
    seen: set[str] = set()
    for t in root.table_list("targets"):
        name = _name(t.string("name", ""), t.key("name"))
        if name in seen:
            raise ConfigError(t.key("name"), f"duplicate target name {name!r}")
        seen.add(name)
        sock = t.string("socket", "")
        if not sock:
            raise ConfigError(t.key("socket"), "required")
        uuid = t.string("uuid", "") or None
        targets.append(
            TargetConfig(
                name=name,
                socket=sock,
                protocol=(protocol := t.string("protocol", "qga", choices=PROTOCOLS)),
                mode=_mode(t, protocol, "persistent"),
                uuid=uuid,
            )
        )
        t.finish()

    discovery = root.section("discovery")
    globs: list[SocketDiscoveryConfig] = []
    for g in discovery.table_list("sockets"):
        pattern = g.string("glob", "")
        if not pattern:
            raise ConfigError(g.key("glob"), "required")
        globs.append(
            SocketDiscoveryConfig(
                glob=pattern,
                protocol=(protocol := g.string("protocol", "qga", choices=PROTOCOLS)),
                mode=_mode(g, protocol, "per-poll"),
            )
        )
        g.finish()
    lib = discovery.section("libvirt")
    libvirt = LibvirtDiscoveryConfig(uri=lib.string("uri", ""))
    lib.finish()
    discovery.finish()
    alerting = _alerting(root.section("alerting"))
    retention = _retention(root.section("retention"))
    root.finish()

    return Config(
        service=ServiceConfig(hypervisor=hypervisor, log_level=log_level, event_loop=event_loop),
        storage=StorageConfig(url=url),
        http=HttpConfig(listen=listen, web_config=web_config),
        polling=polling,
        liveness=LivenessConfig(late_after=late_after, down_after=down_after),
        targets=tuple(targets),
        socket_discovery=tuple(globs),
        libvirt=libvirt,
        alerting=alerting,
        retention=retention,
    )


def _retention(r: _Section) -> RetentionConfig:
    """[retention]: raw samples and hourly roll-ups need an age; the rest "" = forever."""
    d = RetentionConfig()

    def forever_or(name: str) -> float | None:
        value = r.raw(name, "")
        return None if value == "" else parse_duration(value, r.key(name))

    retention = RetentionConfig(
        samples=r.duration("samples", d.samples),
        hourly=r.duration("hourly", d.hourly),
        daily=forever_or("daily"),
        closed_rows=forever_or("closed_rows"),
        events=forever_or("events"),
    )
    r.finish()
    if retention.hourly < retention.samples:
        raise ConfigError("retention.hourly", "must be at least retention.samples")
    if retention.daily is not None and retention.daily < retention.hourly:
        raise ConfigError("retention.daily", "must be at least retention.hourly")
    return retention


def load(path: str | os.PathLike[str] | None = None) -> Config:
    """Load `path`, or $GUESTWATCH_CONFIG, or nothing (all defaults)."""
    chosen = path if path is not None else os.environ.get("GUESTWATCH_CONFIG")
    if not chosen:
        return from_dict({})
    file = Path(chosen)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("--config", f"cannot read {file}: {exc.strerror}") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("--config", f"{file} is not valid TOML: {exc}") from exc
    return from_dict(data)
