"""The store turns observations into validity rows, events, samples and status, and queries them."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from collector.facts import (
    Cpus,
    FactKind,
    FactSet,
    Hostname,
    NetAddress,
    NetInterface,
    OsInfo,
    Package,
    Timezone,
    UserSession,
)
from storage.models import Event, InventoryItem
from storage.records import (
    HeartbeatSeen,
    KindStatus,
    KindSucceeded,
    LivenessChanged,
    Sample,
    SamplesObserved,
)
from storage.repository import AmbiguousDomain, DomainNotFound, Store

from .conftest import T0, digest_of, observed, vm


def ts(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def pkgs(**versions: str) -> list[Package]:
    return [
        Package(name=name, version=version, arch="amd64", manager="dpkg")
        for name, version in versions.items()
    ]


def event_tuples(
    store: Store, **filters: object
) -> list[tuple[str, str | None, str | None, str | None]]:
    return sorted(
        (e.type, e.subject, e.old, e.new)
        for e in store.events(**filters)  # type: ignore[arg-type]
    )


def rows(store: Store, kind: str) -> list[tuple[str, str, datetime, datetime | None]]:
    with store.engine.connect() as conn:
        result = conn.execute(
            select(
                InventoryItem.identity,
                InventoryItem.value,
                InventoryItem.valid_from,
                InventoryItem.valid_to,
            )
            .where(InventoryItem.kind == kind)
            .order_by(InventoryItem.identity, InventoryItem.valid_from)
        )
        return [tuple(r) for r in result]  # type: ignore[misc]


# ---------------------------------------------------------------- packages and validity rows


def test_package_add_remove_upgrade_make_exact_events_and_rows(store: Store) -> None:
    web = vm()
    t1 = T0 + 3600
    store.write(
        [observed(web, T0, FactKind.PACKAGES, pkgs(bash="5.2", openssl="3.0.11", curl="7.88"))]
    )

    # First sight: rows without per-item events, one summary event.
    assert event_tuples(store) == [("inventory_first_seen", "packages", None, "3")]

    store.write(
        [observed(web, t1, FactKind.PACKAGES, pkgs(bash="5.2", openssl="3.0.13", vim="9.0"))]
    )
    assert event_tuples(store, since=ts(t1)) == [
        ("package_added", "vim", None, "9.0"),
        ("package_removed", "curl", "7.88", None),
        ("package_upgraded", "openssl", "3.0.11", "3.0.13"),
    ]
    got = [(ident, vf, vt) for ident, _, vf, vt in rows(store, "packages")]
    assert got == [
        ("bash:amd64", ts(T0), None),
        ("curl:amd64", ts(T0), ts(t1)),
        ("openssl:amd64", ts(T0), ts(t1)),
        ("openssl:amd64", ts(t1), None),
        ("vim:amd64", ts(t1), None),
    ]

    def versions(inv_at: datetime | None) -> dict[str, str]:
        inv = store.inventory("web-1", at=inv_at)
        return {p["name"]: p["version"] for p in inv.facts.get(FactKind.PACKAGES, [])}

    assert versions(None) == {"bash": "5.2", "openssl": "3.0.13", "vim": "9.0"}
    assert versions(ts(T0 + 60)) == {"bash": "5.2", "openssl": "3.0.11", "curl": "7.88"}
    # valid_from <= at < valid_to: at the instant of change the new set is in force.
    assert versions(ts(t1)) == versions(None)
    assert versions(ts(T0 - 1)) == {}
    assert store.inventory("web-1", at=ts(T0 + 60)).at == ts(T0 + 60)


def test_downgrade_is_reported_as_package_upgraded(store: Store) -> None:
    web = vm()
    store.write([observed(web, T0, FactKind.PACKAGES, pkgs(openssl="3.0.13"))])
    store.write([observed(web, T0 + 1, FactKind.PACKAGES, pkgs(openssl="3.0.11"))])
    assert ("package_upgraded", "openssl", "3.0.13", "3.0.11") in event_tuples(store)


def test_unchanged_set_writes_no_rows_and_no_events(store: Store) -> None:
    web = vm()
    store.write([observed(web, T0, FactKind.PACKAGES, pkgs(bash="5.2"))])
    stats = store.write([observed(web, T0 + 1, FactKind.PACKAGES, pkgs(bash="5.2"))])
    assert (stats.items_opened, stats.items_closed, stats.events) == (0, 0, 0)
    assert len(rows(store, "packages")) == 1


def test_first_observation_of_many_packages_makes_one_event(store: Store) -> None:
    web = vm()
    many = [Package(name=f"lib{i}", version="1.0") for i in range(1500)]
    stats = store.write([observed(web, T0, FactKind.PACKAGES, many)])
    assert stats.items_opened == 1500
    assert event_tuples(store) == [("inventory_first_seen", "packages", None, "1500")]
    # The first sight is per kind: another kind later is a first sight too.
    store.write([observed(web, T0 + 1, FactKind.USERS, [UserSession(name="root")])])
    assert event_tuples(store, kind="users") == [("inventory_first_seen", "users", None, "1")]


def test_empty_first_set_counts_as_first_sight(store: Store) -> None:
    web = vm()
    store.write([observed(web, T0, FactKind.USERS, [])])
    alice = UserSession(name="alice", login_time=T0 + 5)
    store.write([observed(web, T0 + 10, FactKind.USERS, [alice])])
    store.write([observed(web, T0 + 20, FactKind.USERS, [])])
    assert [(e.type, e.subject) for e in reversed(store.events(kind="users"))] == [
        ("inventory_first_seen", "users"),
        ("user_login", "alice"),
        ("user_logout", "alice"),
    ]


def test_same_kind_twice_in_one_batch_is_applied_in_order(store: Store) -> None:
    web = vm()
    stats = store.write(
        [
            observed(web, T0, FactKind.PACKAGES, pkgs(bash="5.1", curl="7.88")),
            observed(web, T0 + 10, FactKind.PACKAGES, pkgs(bash="5.2")),
            observed(web, T0 + 20, FactKind.PACKAGES, pkgs(bash="5.2", zsh="5.9")),
        ]
    )
    assert event_tuples(store) == [
        ("inventory_first_seen", "packages", None, "2"),
        ("package_added", "zsh", None, "5.9"),
        ("package_removed", "curl", "7.88", None),
        ("package_upgraded", "bash", "5.1", "5.2"),
    ]
    assert [(i, vf, vt) for i, _, vf, vt in rows(store, "packages")] == [
        ("bash:amd64", ts(T0), ts(T0 + 10)),
        ("bash:amd64", ts(T0 + 10), None),
        ("curl:amd64", ts(T0), ts(T0 + 10)),
        ("zsh:amd64", ts(T0 + 20), None),
    ]
    assert stats.items_opened == 4
    assert stats.items_closed == 2


def test_packages_query_finds_vms_with_a_package(store: Store) -> None:
    a, b, c = vm("a"), vm("b"), vm("c")
    store.write(
        [
            observed(a, T0, FactKind.PACKAGES, pkgs(openssl="3.0.11")),
            observed(b, T0, FactKind.PACKAGES, pkgs(openssl="3.0.13")),
            observed(c, T0, FactKind.PACKAGES, pkgs(bash="5.2")),
        ]
    )
    store.write([observed(a, T0 + 5, FactKind.PACKAGES, pkgs(openssl="3.0.13"))])
    hits = store.packages("openssl")
    assert [(h.domain, h.version, h.arch, h.manager) for h in hits] == [
        ("a", "3.0.13", "amd64", "dpkg"),
        ("b", "3.0.13", "amd64", "dpkg"),
    ]
    assert hits[0].since == ts(T0 + 5)
    assert store.packages("openssl", version="3.0.11") == []
    assert [h.domain for h in store.packages("bash", version="5.2")] == ["c"]


def test_history_returns_rows_opened_or_closed_in_window(store: Store) -> None:
    web = vm()
    store.write([observed(web, T0, FactKind.PACKAGES, pkgs(bash="5.1", curl="7.88"))])
    store.write([observed(web, T0 + 100, FactKind.PACKAGES, pkgs(bash="5.2", curl="7.88"))])
    store.write([observed(web, T0, FactKind.HOSTNAME, [Hostname(name="web")])])

    all_rows = store.history("web-1")
    assert len(all_rows) == 4
    window = store.history("web-1", kind=FactKind.PACKAGES, since=ts(T0 + 50))
    assert [(h.name, h.value["version"], h.valid_from, h.valid_to) for h in window] == [
        ("bash", "5.2", ts(T0 + 100), None),
        ("bash", "5.1", ts(T0), ts(T0 + 100)),
    ]
    assert store.history("web-1", until=ts(T0)) == []
    assert len(store.history("web-1", limit=1)) == 1


# ---------------------------------------------------------------- scalar kinds and network


def test_scalar_changes_make_kind_specific_events(store: Store) -> None:
    web = vm()
    os1 = OsInfo(id="debian", pretty_name="Debian GNU/Linux 12", kernel_release="6.1.0-17-amd64")
    store.write(
        [
            observed(web, T0, FactKind.OS, [os1]),
            observed(web, T0, FactKind.HOSTNAME, [Hostname(name="web", fqdn="web.lan")]),
            observed(web, T0, FactKind.TIMEZONE, [Timezone(zone="UTC")]),
            observed(web, T0, FactKind.CPUS, [Cpus(online=2, total=2)]),
        ]
    )
    os2 = OsInfo(id="debian", pretty_name="Debian GNU/Linux 12", kernel_release="6.1.0-18-amd64")
    os3 = OsInfo(id="debian", pretty_name="Debian GNU/Linux 13", kernel_release="6.12.0-1-amd64")
    store.write(
        [
            observed(web, T0 + 1, FactKind.OS, [os2]),
            observed(web, T0 + 1, FactKind.HOSTNAME, [Hostname(name="www", fqdn="www.lan")]),
            observed(web, T0 + 1, FactKind.TIMEZONE, [Timezone(zone="Europe/Paris")]),
            observed(web, T0 + 1, FactKind.CPUS, [Cpus(online=4, total=4)]),
        ]
    )
    store.write([observed(web, T0 + 2, FactKind.OS, [os3])])
    assert event_tuples(store, since=ts(T0 + 1)) == [
        ("cpus_changed", "cpus", "2/2", "4/4"),
        ("hostname_changed", "hostname", "web", "www"),
        ("kernel_changed", "os", "6.1.0-17-amd64", "6.1.0-18-amd64"),
        ("os_changed", "os", "Debian GNU/Linux 12", "Debian GNU/Linux 13"),
        ("timezone_changed", "timezone", "UTC", "Europe/Paris"),
    ]
    info = store.vm("web-1")
    assert (info.os_pretty_name, info.hostname) == ("Debian GNU/Linux 13", "www")


def test_network_interface_and_address_events(store: Store) -> None:
    web = vm()
    v4 = NetAddress("10.0.0.5", 24, "ipv4")
    v6 = NetAddress("fe80::1", 64, "ipv6")
    eth0 = NetInterface(name="eth0", mac="52:54:00:00:00:01", addresses=(v4,), rx_bytes=1)
    store.write([observed(web, T0, FactKind.NETWORK, [eth0])])

    # Counters alone are measurements: no new row, no event.
    counters_only = NetInterface(name="eth0", mac=eth0.mac, addresses=(v4,), rx_bytes=999)
    stats = store.write([observed(web, T0 + 1, FactKind.NETWORK, [counters_only])])
    assert stats.events == 0

    new_v4 = NetAddress("10.0.0.6", 24, "ipv4")
    eth0b = NetInterface(name="eth0", mac=eth0.mac, addresses=(new_v4, v6))
    eth1 = NetInterface(
        name="eth1", mac="52:54:00:00:00:02", addresses=(NetAddress("192.168.1.2", 24, "ipv4"),)
    )
    store.write([observed(web, T0 + 2, FactKind.NETWORK, [eth0b, eth1])])
    assert event_tuples(store, since=ts(T0 + 2)) == [
        ("address_added", "eth0", None, "10.0.0.6/24"),
        ("address_added", "eth0", None, "fe80::1/64"),
        ("address_added", "eth1", None, "192.168.1.2/24"),
        ("address_removed", "eth0", "10.0.0.5/24", None),
        ("interface_added", "eth1", None, "52:54:00:00:00:02"),
    ]
    store.write([observed(web, T0 + 3, FactKind.NETWORK, [eth0b])])
    assert event_tuples(store, since=ts(T0 + 3)) == [
        ("address_removed", "eth1", "192.168.1.2/24", None),
        ("interface_removed", "eth1", "52:54:00:00:00:02", None),
    ]
    # "When did this IP appear": one indexed filter on type and a subject/new match.
    appeared = [e for e in store.events(type="address_added") if e.new == "10.0.0.6/24"]
    assert [e.at for e in appeared] == [ts(T0 + 2)]


# ---------------------------------------------------------------- samples, status, liveness


def test_samples_are_bulk_inserted_and_queried(store: Store) -> None:
    web = vm()
    store.write(
        [
            SamplesObserved(
                web,
                T0 + i,
                (
                    Sample("memory_available_bytes", "", 1000.0 + i),
                    Sample("filesystem_used_bytes", "/", 50.0 * i),
                    Sample("filesystem_used_bytes", "/var", math.nan),  # skipped
                ),
            )
            for i in range(5)
        ]
    )
    points = store.samples("web-1", "memory_available_bytes", since=ts(T0 + 2))
    assert [(p.at, p.label, p.value) for p in points] == [
        (ts(T0 + i), "", 1000.0 + i) for i in (2, 3, 4)
    ]
    fs = store.samples("web-1", "filesystem_used_bytes")
    assert [p.label for p in fs] == ["/"] * 5
    assert store.prune_samples(ts(T0 + 3)) == 6
    assert len(store.samples("web-1", "memory_available_bytes")) == 2


def test_kind_status_and_coalesced_last_success(store: Store) -> None:
    web = vm()
    store.write(
        [
            KindStatus(web, T0, FactKind.PACKAGES, "error", "timeout"),
            KindSucceeded(web, T0 + 30, FactKind.USERS),
            KindSucceeded(web, T0 + 10, FactKind.USERS),  # older, later in the batch
        ]
    )
    kinds = store.vm("web-1").kinds
    assert kinds[FactKind.PACKAGES].status == "error"
    assert kinds[FactKind.PACKAGES].reason == "timeout"
    assert kinds[FactKind.PACKAGES].since == ts(T0)
    assert kinds[FactKind.PACKAGES].last_success is None
    assert kinds[FactKind.USERS].status == "ok"
    assert kinds[FactKind.USERS].last_success == ts(T0 + 30)

    store.write(
        [
            KindStatus(web, T0 + 40, FactKind.PACKAGES, "error", "garbage"),  # same status
            KindSucceeded(web, T0 + 20, FactKind.USERS),  # older than stored: ignored
        ]
    )
    kinds = store.vm("web-1").kinds
    assert (kinds[FactKind.PACKAGES].reason, kinds[FactKind.PACKAGES].since) == ("garbage", ts(T0))
    assert kinds[FactKind.USERS].last_success == ts(T0 + 30)

    store.write(
        [
            KindStatus(web, T0 + 50, FactKind.PACKAGES, "unavailable", "command disabled"),
            KindSucceeded(web, T0 + 60, FactKind.PACKAGES),
        ]
    )
    state = store.inventory("web-1").status[FactKind.PACKAGES]
    assert (state.status, state.since, state.last_success) == (
        "unavailable",
        ts(T0 + 50),
        ts(T0 + 60),
    )


def test_liveness_changes_update_state_and_make_events(store: Store) -> None:
    web = vm()
    store.write(
        [
            LivenessChanged(web, T0, "unknown", "up"),
            LivenessChanged(web, T0 + 10, "up", "late", "2 heartbeats missed"),
        ]
    )
    store.write([LivenessChanged(web, T0 + 30, "late", "down", "6 heartbeats missed")])
    info = store.vm("web-1")
    assert (info.state, info.state_since) == ("down", ts(T0 + 30))
    assert [
        (e.type, e.old, e.new, e.subject, e.kind) for e in store.events(type="liveness_changed")
    ] == [
        ("liveness_changed", "late", "down", "6 heartbeats missed", None),
        ("liveness_changed", "up", "late", "2 heartbeats missed", None),
        ("liveness_changed", "unknown", "up", "", None),
    ]


def test_heartbeats_are_coalesced_to_the_newest(store: Store) -> None:
    a, b = vm("a"), vm("b")
    store.write([HeartbeatSeen(a, T0 + i) for i in (3, 1, 7, 2)] + [HeartbeatSeen(b, T0 + 1)])
    assert store.vm("a").last_heartbeat == ts(T0 + 7)
    assert store.vm("b").last_heartbeat == ts(T0 + 1)
    store.write([HeartbeatSeen(a, T0 + 5)])  # late, older: never moves last-seen back
    assert store.vm("a").last_heartbeat == ts(T0 + 7)
    with store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Event)).scalar() == 0


# ---------------------------------------------------------------- VMs, domains, digests


def test_vm_upsert_updates_changed_attributes(store: Store) -> None:
    ref = vm("db-1", uuid="1b4e28ba-2fa1-11d2-883f-0016d3cca427")
    store.write([HeartbeatSeen(ref, T0)])
    moved = type(ref)(
        key=ref.key, name="db-1-renamed", hypervisor="host-b", protocol="qga", uuid=ref.uuid
    )
    store.write([HeartbeatSeen(moved, T0 + 1)])
    no_uuid = type(ref)(key=ref.key, name="db-1-renamed", hypervisor="host-b", protocol="qga")
    store.write([HeartbeatSeen(no_uuid, T0 + 2)])
    [info] = store.list_vms()
    assert (info.name, info.hypervisor, info.uuid, info.first_seen, info.state) == (
        "db-1-renamed",
        "host-b",
        ref.uuid,
        ts(T0),
        "unknown",
    )


def test_domains_resolve_by_key_uuid_or_name(store: Store) -> None:
    uuid = "1b4e28ba-2fa1-11d2-883f-0016d3cca427"
    store.write(
        [
            HeartbeatSeen(vm("web-1", hypervisor="host-a"), T0),
            HeartbeatSeen(vm("web-1", hypervisor="host-b"), T0),
            HeartbeatSeen(vm("db-1", uuid=uuid), T0),
        ]
    )
    assert store.vm(uuid).name == "db-1"
    assert store.vm("db-1").key == uuid
    assert store.vm("host-b/web-1").hypervisor == "host-b"
    with pytest.raises(AmbiguousDomain) as ambiguous:
        store.vm("web-1")
    assert ambiguous.value.keys == ["host-a/web-1", "host-b/web-1"]
    for query in (
        lambda: store.vm("nope"),
        lambda: store.inventory("nope"),
        lambda: store.history("nope"),
        lambda: store.events(domain="nope"),
        lambda: store.samples("nope", "memory_available_bytes"),
    ):
        with pytest.raises(DomainNotFound):
            query()


def test_digests_equal_factset_digest(store: Store) -> None:
    web, db_vm = vm("web"), vm("db")
    packages1 = pkgs(bash="5.2", openssl="3.0.11")
    packages2 = pkgs(bash="5.2", openssl="3.0.13", vim="9.0")
    net = [
        NetInterface(
            name="eth0", mac="m", addresses=(NetAddress("10.0.0.5", 24, "ipv4"),), rx_bytes=5
        )
    ]
    users: list[UserSession] = []
    os_ = [OsInfo(pretty_name="Débian ☃")]
    store.write(
        [
            observed(web, T0, FactKind.PACKAGES, packages1),
            observed(web, T0, FactKind.NETWORK, net),
            observed(db_vm, T0, FactKind.USERS, users),
            observed(db_vm, T0, FactKind.OS, os_),
        ]
    )
    store.write([observed(web, T0 + 1, FactKind.PACKAGES, packages2)])
    expected = {
        ("host-a/web", FactKind.PACKAGES): digest_of(FactKind.PACKAGES, packages2),
        ("host-a/web", FactKind.NETWORK): digest_of(FactKind.NETWORK, net),
        ("host-a/db", FactKind.USERS): digest_of(FactKind.USERS, users),
        ("host-a/db", FactKind.OS): digest_of(FactKind.OS, os_),
    }
    assert store.current_digests() == expected
    assert store.recompute_digests() == expected
    # A collector warm-started from these skips an unchanged set.
    assert (
        FactSet(FactKind.PACKAGES, tuple(packages2)).digest()
        == expected[("host-a/web", FactKind.PACKAGES)]
    )


def test_hostile_text_is_stored(store: Store) -> None:
    web = vm("evil\x00vm")
    bad = [
        Package(name="nul\x00name", version="1\x00"),
        Package(name="surrogate\udcff", version="x" * 5000),
        Package(name="n" * 1000, version="1"),
    ]
    store.write([observed(web, T0, FactKind.PACKAGES, bad)])
    store.write([observed(web, T0 + 1, FactKind.PACKAGES, bad[1:])])
    [info] = store.list_vms()
    assert info.name == "evil\ufffdvm"
    [removed] = store.events(type="package_removed")
    assert removed.subject == "nul\ufffdname"
    assert len(store.inventory(info.key).facts[FactKind.PACKAGES]) == 2


def test_the_stored_digest_is_the_rows_digest_when_the_store_altered_the_set(
    store: Store,
) -> None:
    """The writer reuses the collector's digest only when the rows are the facts unaltered."""
    web, db_vm = vm("web"), vm("db")
    cleaned = [Package(name="nul\x00name", version="1"), Package(name="bash", version="5")]
    collapsed = [Package(name="bash", version="5"), Package(name="bash", version="6")]
    store.write(
        [
            observed(web, T0, FactKind.PACKAGES, cleaned),
            observed(db_vm, T0, FactKind.PACKAGES, collapsed),
        ]
    )
    store.write([observed(web, T0 + 1, FactKind.PACKAGES, [*cleaned, pkgs(vim="9")[0]])])
    digests = store.current_digests()
    assert digests == store.recompute_digests()
    assert digests[("host-a/db", FactKind.PACKAGES)] != digest_of(FactKind.PACKAGES, collapsed)


def test_list_vms_summarises_each_vm(store: Store) -> None:
    a, b = vm("a"), vm("b")
    store.write(
        [
            observed(a, T0, FactKind.OS, [OsInfo(name="Debian", pretty_name="Debian 12")]),
            observed(a, T0, FactKind.HOSTNAME, [Hostname(name="a.example")]),
            KindStatus(a, T0, FactKind.PACKAGES, "unavailable", "guest-exec disabled"),
            LivenessChanged(a, T0, "unknown", "up"),
            HeartbeatSeen(b, T0 + 5),
        ]
    )
    a_info, b_info = store.list_vms()
    assert (a_info.name, a_info.os_pretty_name, a_info.hostname, a_info.state) == (
        "a",
        "Debian 12",
        "a.example",
        "up",
    )
    assert a_info.kinds[FactKind.PACKAGES].reason == "guest-exec disabled"
    assert (b_info.name, b_info.os_pretty_name, b_info.last_heartbeat) == ("b", None, ts(T0 + 5))
    assert b_info.state_since == ts(T0 + 5)


def test_events_filters_and_limit(store: Store) -> None:
    a, b = vm("a"), vm("b")
    store.write(
        [
            observed(a, T0, FactKind.PACKAGES, pkgs(x="1")),
            observed(b, T0, FactKind.PACKAGES, pkgs(x="1")),
        ]
    )
    for i in range(1, 6):
        store.write([observed(a, T0 + i, FactKind.PACKAGES, pkgs(x=str(i + 1)))])
    assert len(store.events(domain="a", type="package_upgraded")) == 5
    assert len(store.events(domain="b", type="package_upgraded")) == 0
    assert [e.new for e in store.events(type="package_upgraded", limit=2)] == ["6", "5"]
    window = store.events(since=ts(T0 + 2), until=ts(T0 + 4))
    assert [e.at for e in window] == [ts(T0 + 3), ts(T0 + 2)]
    assert store.events(since=ts(T0) - timedelta(days=1), type="nope") == []
