"""TLS and basic auth from an exporter-toolkit web config, on the real service: certificates
made here (a CA, a server and a client certificate), the file checked by promtool itself."""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
import shutil
import ssl
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from collector.config import Config, HttpConfig
from collector.daemon import running
from exporters.webconfig import WebConfigError, load, parse
from tests.support.real import require
from tests.support.service import fast_config, free_port

PASSWORD = "correct horse battery staple"
PROTECTED = [
    "/metrics",
    "/openapi.json",
    "/api/v1/domains",
    "/api/v1/domains/x",
    "/api/v1/domains/x/history",
    "/api/v1/domains/x/diff?from=2026-01-01T00:00:00Z",
    "/api/v1/domains/x/samples?metric=m",
    "/api/v1/events",
    "/api/v1/packages?name=openssl",
    "/api/v1/alerts",
]


@pytest.fixture
def base() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="gwtls-", dir="/tmp"))
    (path / "sockets").mkdir()
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _write(path: Path, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> None:
    path.with_suffix(".key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.with_suffix(".crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def make_pki(directory: Path) -> None:
    """ca.crt, server.crt/.key (127.0.0.1, localhost), client.crt/.key, other-ca.crt."""
    now = dt.datetime.now(dt.UTC)

    def issue(
        name: str,
        issuer: tuple[ec.EllipticCurvePrivateKey, x509.Name] | None,
        *,
        ca: bool = False,
        usage: list[x509.ObjectIdentifier] | None = None,
        san: list[x509.GeneralName] | None = None,
    ) -> tuple[ec.EllipticCurvePrivateKey, x509.Name]:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        signer_key, issuer_name = issuer or (key, subject)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if ca:
            builder = builder.add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
        if usage:
            builder = builder.add_extension(x509.ExtendedKeyUsage(usage), critical=False)
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        cert = builder.sign(signer_key, hashes.SHA256())
        _write(directory / name, key, cert)
        return key, subject

    ca = issue("ca", None, ca=True)
    issue("other-ca", None, ca=True)
    issue(
        "server",
        ca,
        usage=[ExtendedKeyUsageOID.SERVER_AUTH],
        san=[x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
    )
    issue("client", ca, usage=[ExtendedKeyUsageOID.CLIENT_AUTH])


def web_config(directory: Path, *, client_certs: bool, users: bool = True) -> Path:
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=10)).decode()
    lines = [
        "tls_server_config:",
        f"  cert_file: {directory / 'server.crt'}",
        "  key_file: server.key",  # relative to the file, as in exporter-toolkit
    ]
    if client_certs:
        lines += [
            f"  client_ca_file: {directory / 'ca.crt'}",
            "  client_auth_type: RequireAndVerifyClientCert",
        ]
    if users:
        lines += ["basic_auth_users:", f"  prometheus: {hashed}"]
    lines += ["http_server_config:", "  headers:", "    X-Frame-Options: deny"]
    path = directory / ("web-mtls.yml" if client_certs else "web.yml")
    path.write_text("\n".join(lines) + "\n")
    return path


def with_web_config(config: Config, path: Path) -> Config:
    return dataclasses.replace(
        config, http=HttpConfig(listen=config.http.listen, web_config=str(path))
    )


def context(directory: Path, *, ca: str = "ca", client: bool = False) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(directory / f"{ca}.crt"))
    if client:
        ctx.load_cert_chain(directory / "client.crt", directory / "client.key")
    return ctx


@pytest.mark.real
def test_promtool_accepts_the_files_and_rejects_what_we_reject(base: Path) -> None:
    promtool = require("promtool")
    make_pki(base)
    for path in (web_config(base, client_certs=False), web_config(base, client_certs=True)):
        check = subprocess.run(
            [promtool, "check", "web-config", str(path)], capture_output=True, text=True
        )
        assert check.returncode == 0, check.stdout + check.stderr
        load(path)  # ours accepts it too
    bad = base / "bad.yml"
    for text in (
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  bogus: 1\n",
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
        "  client_auth_type: Sometimes\n",
        "basic_auth_users:\n  alice: plaintext\n",
    ):
        bad.write_text(text)
        check = subprocess.run([promtool, "check", "web-config", str(bad)], capture_output=True)
        assert check.returncode != 0, text
        with pytest.raises(WebConfigError):
            load(bad)


def test_client_ca_without_client_auth_is_refused() -> None:
    with pytest.raises(WebConfigError, match="client_auth_type"):
        parse("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_ca_file: c\n")


async def test_tls_and_basic_auth(base: Path) -> None:
    make_pki(base)
    config = with_web_config(fast_config(base), web_config(base, client_certs=False))
    url = f"https://{config.http.listen}"
    async with running(config):
        # Without our CA the server's certificate is not trusted.
        async with httpx.AsyncClient() as client:
            with pytest.raises(httpx.ConnectError):
                await client.get(f"{url}/healthz")
        async with httpx.AsyncClient(verify=context(base, ca="other-ca")) as client:
            with pytest.raises(httpx.ConnectError):
                await client.get(f"{url}/healthz")
        async with httpx.AsyncClient(verify=context(base)) as client:
            health = await client.get(f"{url}/healthz")
            assert health.status_code == 200
            assert health.text == "ok\n"
            assert health.headers["x-frame-options"] == "deny"
            for path in PROTECTED:
                for auth in (None, ("prometheus", "wrong"), ("nobody", PASSWORD)):
                    response = await client.get(f"{url}{path}", auth=auth)
                    assert response.status_code == 401, (path, auth)
                    assert response.headers["www-authenticate"].startswith("Basic")
                    assert response.headers["content-type"] == "application/problem+json"
                response = await client.get(f"{url}{path}", auth=("prometheus", PASSWORD))
                assert response.status_code != 401, path
            metrics = await client.get(f"{url}/metrics", auth=("prometheus", PASSWORD))
            assert metrics.status_code == 200
            assert "guestwatch_build_info" in metrics.text
        # Plain HTTP on the TLS port gets nothing.
        async with httpx.AsyncClient() as client:
            with pytest.raises(httpx.HTTPError):
                await client.get(f"http://{config.http.listen}/healthz")


async def test_client_certificate_required(base: Path) -> None:
    make_pki(base)
    config = with_web_config(fast_config(base), web_config(base, client_certs=True, users=False))
    url = f"https://{config.http.listen}"
    async with running(config):
        async with httpx.AsyncClient(verify=context(base)) as client:
            # TLS 1.3 reports the missing certificate after the handshake: any transport error.
            with pytest.raises(httpx.TransportError):
                await client.get(f"{url}/metrics")
        async with httpx.AsyncClient(verify=context(base, client=True)) as client:
            response = await client.get(f"{url}/metrics")
            assert response.status_code == 200
            assert "guestwatch_build_info" in response.text


def test_run_refuses_an_invalid_web_config(base: Path) -> None:
    bad = base / "web.yml"
    bad.write_text("tls_server_config:\n  cert_file: missing.crt\n  key_file: missing.key\n")
    config = base / "gw.toml"
    config.write_text(
        f'[storage]\nurl = "sqlite:///{base / "gw.db"}"\n[http]\nweb_config = "{bad}"\n'
        f'listen = "127.0.0.1:{free_port()}"\n'
    )
    run = subprocess.run(
        [sys.executable, "-m", "collector.cli", "--config", str(config), "run"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2, run.stderr[-2000:]
    assert "tls_server_config.cert_file: no such file" in run.stderr
