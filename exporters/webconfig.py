"""The Prometheus exporter-toolkit web configuration file: TLS and basic auth.

`[http] web_config` names the same YAML file an operator already writes for node_exporter
(https://prometheus.io/docs/prometheus/latest/configuration/https/), so one file, checked with
`promtool check web-config`, secures every exporter on a host alike:

```yaml
tls_server_config:
  cert_file: /etc/guestwatch/tls.crt
  key_file: /etc/guestwatch/tls.key
  client_ca_file: /etc/guestwatch/clients-ca.crt   # with client_auth_type: client certificates
  client_auth_type: RequireAndVerifyClientCert
  min_version: TLS12
basic_auth_users:
  prometheus: $2y$10$...                            # bcrypt hash (htpasswd -nBC 10 "" | tr -d ':')
http_server_config:
  headers: {Strict-Transport-Security: max-age=31536000}
```

TLS becomes uvicorn's ssl settings; basic auth is an ASGI middleware in front of `/metrics`,
`/api` and the OpenAPI document, leaving `/healthz` open for load balancers and systemd
watchdogs. bcrypt is slow by design, so checks run in a thread and a successful one is cached
(by user and a SHA-256 of the password, never the password itself), as exporter-toolkit does.
Keys the toolkit accepts but Python's TLS stack cannot honour (cipher suites, curves) are
accepted and logged, not silently dropped; unknown keys are errors, as in promtool.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import logging
import ssl
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import bcrypt
import yaml

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: exporter-toolkit's client_auth_type values → what Python's ssl module can do. Python cannot
#: ask for a certificate without verifying it, so "request" and "require any" verify too.
CLIENT_AUTH: Final[Mapping[str, ssl.VerifyMode]] = {
    "NoClientCert": ssl.CERT_NONE,
    "RequestClientCert": ssl.CERT_OPTIONAL,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAnyClientCert": ssl.CERT_REQUIRED,
    "RequireClientCert": ssl.CERT_REQUIRED,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
TLS_VERSIONS: Final[Mapping[str, ssl.TLSVersion]] = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
_TLS_KEYS: Final = {
    "cert_file",
    "key_file",
    "client_ca_file",
    "client_auth_type",
    "min_version",
    "max_version",
    "cipher_suites",
    "curve_preferences",
    "prefer_server_cipher_suites",
    "client_allowed_sans",
}
_NOT_APPLIED: Final = ("cipher_suites", "curve_preferences", "prefer_server_cipher_suites")
_TOP_KEYS: Final = {"tls_server_config", "basic_auth_users", "http_server_config"}
#: Paths open without credentials.
OPEN_PATHS: Final = frozenset({"/healthz"})
MAX_FILE_BYTES: Final = 1 << 20
#: Successful checks remembered; beyond this the cache starts over.
AUTH_CACHE_SIZE: Final = 1024
#: Compared against when the user is unknown, so that a wrong user costs what a wrong password
#: does (no user enumeration by timing).
_DUMMY_HASH: Final = bcrypt.hashpw(b"guestwatch-no-such-user", bcrypt.gensalt(rounds=10))


class WebConfigError(ValueError):
    """An invalid web config file; the message names the file and the key."""


@dataclass(frozen=True, slots=True)
class TlsConfig:
    cert_file: str
    key_file: str
    client_ca_file: str = ""
    client_auth: ssl.VerifyMode = ssl.CERT_NONE
    min_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2
    max_version: ssl.TLSVersion | None = None


@dataclass(frozen=True, slots=True)
class WebConfig:
    tls: TlsConfig | None = None
    #: user → bcrypt hash.
    users: Mapping[str, bytes] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)

    def uvicorn_kwargs(self) -> dict[str, Any]:
        """ssl_* arguments of `uvicorn.Config` (empty without TLS)."""
        if self.tls is None:
            return {}
        tls = self.tls

        def factory(config: object, default: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
            context = default()
            context.minimum_version = tls.min_version
            if tls.max_version is not None:
                context.maximum_version = tls.max_version
            return context

        kwargs: dict[str, Any] = {
            "ssl_certfile": tls.cert_file,
            "ssl_keyfile": tls.key_file,
            "ssl_cert_reqs": int(tls.client_auth),
            "ssl_context_factory": factory,
        }
        if tls.client_ca_file:
            kwargs["ssl_ca_certs"] = tls.client_ca_file
        return kwargs


def _mapping(value: object, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise WebConfigError(f"{where}: expected a mapping")
    return value


def _string(data: Mapping[str, Any], key: str, where: str) -> str:
    value = data.get(key, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise WebConfigError(f"{where}.{key}: expected a string, got {value!r}")
    return value


def _path(base: Path, value: str) -> str:
    """Relative paths are relative to the web config file, as in exporter-toolkit."""
    return str(base / value) if value and not Path(value).is_absolute() else value


def parse(text: str, base: Path = Path()) -> WebConfig:
    """Validate the YAML text of a web config; paths resolve against `base`."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise WebConfigError(f"not valid YAML: {exc}") from exc
    root = _mapping(data, "web config")
    if unknown := sorted(set(root) - _TOP_KEYS):
        raise WebConfigError(f"{unknown[0]}: unknown key")

    tls: TlsConfig | None = None
    t = _mapping(root.get("tls_server_config"), "tls_server_config")
    if t:
        if unknown := sorted(set(t) - _TLS_KEYS):
            raise WebConfigError(f"tls_server_config.{unknown[0]}: unknown key")
        where = "tls_server_config"
        cert, key = _string(t, "cert_file", where), _string(t, "key_file", where)
        if not cert or not key:
            raise WebConfigError(f"{where}: cert_file and key_file are both required")
        auth_name = _string(t, "client_auth_type", where) or "NoClientCert"
        if auth_name not in CLIENT_AUTH:
            raise WebConfigError(
                f"{where}.client_auth_type: must be one of {', '.join(CLIENT_AUTH)}, "
                f"got {auth_name!r}"
            )
        client_ca = _string(t, "client_ca_file", where)
        client_auth = CLIENT_AUTH[auth_name]
        if client_ca and client_auth is ssl.CERT_NONE:
            raise WebConfigError(
                f"{where}: client_ca_file is set without a client_auth_type that asks for "
                "client certificates"
            )
        if client_auth is not ssl.CERT_NONE and not client_ca:
            raise WebConfigError(
                f"{where}.client_auth_type {auth_name}: needs client_ca_file (Python verifies "
                "every client certificate it asks for)"
            )
        versions: dict[str, ssl.TLSVersion | None] = {}
        for name in ("min_version", "max_version"):
            value = _string(t, name, where)
            if value and value not in TLS_VERSIONS:
                raise WebConfigError(
                    f"{where}.{name}: must be one of {', '.join(TLS_VERSIONS)}, got {value!r}"
                )
            versions[name] = TLS_VERSIONS[value] if value else None
        for name in _NOT_APPLIED:
            if t.get(name):
                log.warning("web config: %s.%s is accepted but not applied", where, name)
        tls = TlsConfig(
            cert_file=_path(base, cert),
            key_file=_path(base, key),
            client_ca_file=_path(base, client_ca),
            client_auth=client_auth,
            min_version=versions["min_version"] or ssl.TLSVersion.TLSv1_2,
            max_version=versions["max_version"],
        )

    users: dict[str, bytes] = {}
    for user, hashed in _mapping(root.get("basic_auth_users"), "basic_auth_users").items():
        if not isinstance(hashed, str) or not hashed.startswith(("$2a$", "$2b$", "$2y$")):
            raise WebConfigError(f"basic_auth_users.{user}: expected a bcrypt hash")
        users[user] = hashed.encode()

    headers: dict[str, str] = {}
    server = _mapping(root.get("http_server_config"), "http_server_config")
    for key, value in _mapping(server.get("headers"), "http_server_config.headers").items():
        if not isinstance(value, str) or any(c in key + value for c in "\r\n\0"):
            raise WebConfigError(f"http_server_config.headers.{key}: expected one line of text")
        headers[key] = value
    return WebConfig(tls=tls, users=users, headers=headers)


def load(path: str | Path) -> WebConfig:
    """Read and validate a web config file; the certificate files must be readable."""
    file = Path(path)
    try:
        with file.open("rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise WebConfigError(f"{file}: cannot read: {exc.strerror}") from exc
    if len(raw) > MAX_FILE_BYTES:
        raise WebConfigError(f"{file}: larger than {MAX_FILE_BYTES} bytes")
    try:
        config = parse(raw.decode("utf-8"), file.parent)
    except UnicodeDecodeError as exc:
        raise WebConfigError(f"{file}: not UTF-8") from exc
    except WebConfigError as exc:
        raise WebConfigError(f"{file}: {exc}") from exc
    if config.tls is not None:
        for name in ("cert_file", "key_file", "client_ca_file"):
            value = getattr(config.tls, name)
            if value and not Path(value).is_file():
                raise WebConfigError(f"{file}: tls_server_config.{name}: no such file {value}")
    return config


class Authenticator:
    """bcrypt checks of basic-auth credentials, off the event loop, successes cached."""

    def __init__(self, users: Mapping[str, bytes]) -> None:
        self.users = dict(users)
        self._ok: set[tuple[str, bytes]] = set()

    async def check(self, header: str | None) -> bool:
        if not header:
            return False
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic" or len(encoded) > 4096:
            return False
        try:
            user, sep, password = (
                base64.b64decode(encoded.strip(), validate=True).decode("utf-8").partition(":")
            )
        except (binascii.Error, UnicodeDecodeError):
            return False
        if not sep:
            return False
        digest = hashlib.sha256(f"{user}\0{password}".encode()).digest()
        key = (user, digest)
        if key in self._ok:
            return True
        hashed = self.users.get(user)
        ok = await asyncio.to_thread(
            bcrypt.checkpw, password.encode(), hashed if hashed is not None else _DUMMY_HASH
        )
        ok = ok and hashed is not None
        if ok:
            if len(self._ok) >= AUTH_CACHE_SIZE:
                self._ok.clear()
            self._ok.add(key)
        return ok


class WebConfigMiddleware:
    """Basic auth on every path but `/healthz`, and the configured response headers."""

    def __init__(self, app: ASGIApp, config: WebConfig) -> None:
        self.app = app
        self.config = config
        self.auth = Authenticator(config.users) if config.users else None
        self.headers = [(k.lower().encode(), v.encode()) for k, v in config.headers.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send_with_headers = self._with_headers(send) if self.headers else send
        if self.auth is not None and scope.get("path") not in OPEN_PATHS:
            header = None
            for name, value in scope.get("headers", []):
                if name == b"authorization":
                    header = value.decode("latin-1")
                    break
            if not await self.auth.check(header):
                await _unauthorized(send_with_headers)
                return
        await self.app(scope, receive, send_with_headers)

    def _with_headers(self, send: Send) -> Send:
        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *self.headers]
            await send(message)

        return wrapped


async def _unauthorized(send: Send) -> None:
    body = json.dumps(
        {
            "type": "about:blank",
            "title": "Unauthorized",
            "status": 401,
            "detail": "valid basic-auth credentials are required",
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode()),
                (b"www-authenticate", b'Basic realm="guestwatch", charset="UTF-8"'),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
