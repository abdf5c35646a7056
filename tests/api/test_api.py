"""/api/v1 over a database filled by real polling plus simulated drift (see conftest.py)."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from storage.versions import compare
from tests.api.conftest import Filled, PackageSet
from tests.support.real import require

pytestmark = pytest.mark.real

PATHS = {
    "/metrics",
    "/healthz",
    "/api/v1/domains",
    "/api/v1/domains/{domain}",
    "/api/v1/domains/{domain}/history",
    "/api/v1/domains/{domain}/diff",
    "/api/v1/domains/{domain}/samples",
    "/api/v1/events",
    "/api/v1/packages",
    "/api/v1/alerts",
}


def packages_of(body: dict[str, Any]) -> PackageSet:
    return {(p["name"], p["arch"]): p["version"] for p in body["inventory"]["packages"]}


def walk(client: TestClient, path: str, **params: Any) -> list[dict[str, Any]]:
    """Every item of a paged list, following next_offset."""
    items: list[dict[str, Any]] = []
    offset: int | None = 0
    while offset is not None:
        response = client.get(path, params={**params, "offset": offset})
        assert response.status_code == 200, response.text
        body = response.json()
        items += body["items"]
        offset = body["next_offset"]
    return items


def test_openapi_documents_every_path(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    assert set(document["paths"]) == PATHS
    domain = document["paths"]["/api/v1/domains/{domain}"]["get"]
    assert "at" in {p["name"] for p in domain["parameters"]}
    assert "application/problem+json" in domain["responses"]["404"]["content"]


def test_live_domain_list_has_state_os_heartbeat_and_availability(filled: Filled) -> None:
    body = filled.live_domains
    by_name = {d["domain"]: d for d in body["items"]}
    assert set(by_name) >= {filled.real, filled.debian, filled.rocky}
    assert body["total"] == len(body["items"])
    real = by_name[filled.real]
    assert real["state"] == "up"
    assert real["last_heartbeat"] is not None
    assert real["os"]
    assert real["facts"]["packages"]["status"] == "ok"


def test_at_returns_the_earlier_package_set(client: TestClient, filled: Filled) -> None:
    for name in (filled.debian, filled.rocky):
        then = client.get(f"/api/v1/domains/{name}", params={"at": filled.between.isoformat()})
        assert then.status_code == 200, then.text
        assert packages_of(then.json()) == filled.before[name]
        now = client.get(f"/api/v1/domains/{name}").json()
        assert packages_of(now) == filled.after[name]
        assert now["at"] is None


def expected_changes(before: PackageSet, after: PackageSet) -> set[tuple[str, str, str]]:
    out = set()
    for key in before.keys() | after.keys():
        if key not in before:
            out.add(("added", *key))
        elif key not in after:
            out.add(("removed", *key))
        elif before[key] != after[key]:
            out.add(("changed", *key))
    return out


def test_diff_lists_exactly_the_changes_made(client: TestClient, filled: Filled) -> None:
    for name in (filled.debian, filled.rocky):
        items = walk(
            client,
            f"/api/v1/domains/{name}/diff",
            **{"from": filled.between.isoformat(), "limit": 3},
        )
        got = set()
        for item in items:
            assert item["kind"] == "packages", item  # nothing else drifted
            value = item["new"] or item["old"]
            got.add((item["change"], value["name"], value["arch"]))
            if item["change"] == "changed":
                key = (value["name"], value["arch"])
                assert item["old"]["version"] == filled.before[name][key]
                assert item["new"]["version"] == filled.after[name][key]
        assert got == expected_changes(filled.before[name], filled.after[name])
        assert got, "the drift changed nothing"
    # Between two times before the drift nothing changed.
    same = client.get(
        f"/api/v1/domains/{filled.debian}/diff",
        params={"from": filled.between.isoformat(), "to": filled.between.isoformat()},
    )
    assert same.json()["items"] == []


def upgraded(filled: Filled, name: str) -> tuple[str, str, str]:
    before, after = filled.before[name], filled.after[name]
    key = sorted(k for k in before.keys() & after.keys() if before[k] != after[k])[0]
    return key[0], before[key], after[key]


def test_package_search_now_at_and_older_than_per_manager(
    client: TestClient, filled: Filled
) -> None:
    for name, manager in ((filled.debian, "dpkg"), (filled.rocky, "rpm")):
        package, old, new = upgraded(filled, name)
        assert compare(old, new, manager) < 0

        def hits(package: str = package, manager: str = manager, **params: Any) -> dict[str, str]:
            items = walk(client, "/api/v1/packages", name=package, **params)
            return {h["domain"]: h["version"] for h in items if h["manager"] == manager}

        assert hits()[name] == new
        assert hits(at=filled.between.isoformat())[name] == old
        assert name not in hits(older_than=new)
        assert hits(older_than=new, at=filled.between.isoformat())[name] == old
        assert name not in hits(version=old)
        assert hits(version=old, at=filled.between.isoformat())[name] == old


@pytest.mark.real
def test_package_search_on_the_real_agent_uses_dpkg_order(
    client: TestClient, filled: Filled
) -> None:
    dpkg = require("dpkg")
    version = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Version}", "dpkg"], capture_output=True, text=True, check=True
    ).stdout
    domains = lambda **p: {  # noqa: E731
        h["domain"] for h in walk(client, "/api/v1/packages", name="dpkg", **p)
    }
    assert filled.real in domains(version=version)
    # "~" sorts before everything: V~ < V, so V is not older than V~; V+x is newer than V.
    for probe, included in ((version + "~", False), (version, False), (version + "+x", True)):
        check = subprocess.run([dpkg, "--compare-versions", version, "lt", probe])
        assert (check.returncode == 0) == included
        assert (filled.real in domains(older_than=probe)) == included, probe


def test_events_are_filtered_and_paged(client: TestClient, filled: Filled) -> None:
    before, after = filled.before[filled.debian], filled.after[filled.debian]
    names = {k[0] for k in before.keys() & after.keys() if before[k] != after[k]}
    items = walk(
        client,
        "/api/v1/events",
        domain=filled.debian,
        type="package_upgraded",
        since=(filled.between - timedelta(seconds=1)).isoformat(),
        limit=2,
    )
    assert {e["subject"] for e in items} == names
    assert len(items) == len(names)
    assert all(e["domain"] == filled.debian for e in items)
    times = [e["at"] for e in items]
    assert times == sorted(times, reverse=True)


def test_history_window_and_kind(client: TestClient, filled: Filled) -> None:
    items = walk(
        client,
        f"/api/v1/domains/{filled.debian}/history",
        kind="packages",
        since=filled.between.isoformat(),
        limit=50,
    )
    changed = expected_changes(filled.before[filled.debian], filled.after[filled.debian])
    opened = {(i["value"]["name"], i["value"]["arch"]) for i in items if i["valid_to"] is None}
    assert opened == {(n, a) for c, n, a in changed if c != "removed"}


def test_samples_raw_and_bucketed(client: TestClient, filled: Filled) -> None:
    since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    path = f"/api/v1/domains/{filled.real}/samples"
    raw = client.get(path, params={"metric": "memory_available_bytes", "since": since}).json()
    assert raw["items"], raw
    assert all(p["count"] == 1 and p["min"] == p["max"] for p in raw["items"])
    bucketed = client.get(
        path, params={"metric": "memory_available_bytes", "since": since, "step": "1h"}
    ).json()
    assert sum(p["count"] for p in bucketed["items"]) == len(raw["items"])
    values = [p["avg"] for p in raw["items"]]
    assert bucketed["items"][0]["min"] == min(values)
    assert bucketed["items"][0]["max"] == max(values)


@pytest.mark.parametrize(
    ("path", "params", "status"),
    [
        ("/api/v1/domains/no-such-vm", {}, 404),
        ("/api/v1/domains/no-such-vm/history", {}, 404),
        ("/api/v1/domains/{debian}", {"at": "yesterday"}, 422),
        ("/api/v1/domains/{debian}/diff", {}, 422),
        ("/api/v1/domains/{debian}/samples", {"metric": "fs_used", "step": "x"}, 422),
        ("/api/v1/domains/{debian}/samples", {"metric": "Robert'); DROP TABLE vms;--"}, 422),
        ("/api/v1/events", {"limit": 0}, 422),
        ("/api/v1/events", {"limit": 100_000}, 422),
        ("/api/v1/events", {"domain": "x" * 300}, 422),
        ("/api/v1/events", {"domain": "no-such-vm"}, 404),
        ("/api/v1/packages", {}, 422),
        ("/api/v1/nothing-here", {}, 404),
    ],
)
def test_errors_are_problem_details(
    client: TestClient, filled: Filled, path: str, params: dict[str, Any], status: int
) -> None:
    response = client.get(path.format(debian=filled.debian), params=params)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status
    assert body["title"]
