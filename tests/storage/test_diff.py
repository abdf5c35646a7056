"""The event vocabulary for each kind of change, without a database."""

from __future__ import annotations

from collector.facts import (
    Disk,
    FactKind,
    FactSet,
    Filesystem,
    Memory,
    OsInfo,
    Package,
    UserSession,
    pairs_digest,
)
from storage.diff import Change, EventType, changes


def test_package_rules() -> None:
    old = Package(name="bash", version="5.1", raw="a").value()
    same_version = Package(name="bash", version="5.1", raw="b").value()
    assert changes(FactKind.PACKAGES, "bash", old, same_version) == [
        Change(EventType.ITEM_CHANGED, "bash", old, same_version)
    ]
    assert changes(FactKind.PACKAGES, "bash", None, old) == [
        Change(EventType.PACKAGE_ADDED, "bash", None, "5.1")
    ]


def test_filesystem_and_disk_rules() -> None:
    root = Filesystem(mountpoint="/", fstype="ext4", size_bytes=10, used_bytes=1)
    grown = Filesystem(mountpoint="/", fstype="ext4", size_bytes=20, used_bytes=1)
    [event] = changes(FactKind.FILESYSTEMS, "/", root.value(), grown.value())
    assert (event.type, event.subject) == (EventType.FILESYSTEM_CHANGED, "/")
    assert '"size_bytes":20' in (event.new or "")
    assert "used_bytes" not in (event.new or "")  # a measurement, not inventory
    [event] = changes(FactKind.DISKS, "vda", None, Disk(name="vda").value())
    assert event.type == EventType.DISK_ADDED
    [event] = changes(
        FactKind.DISKS, "vda", Disk(name="vda").value(), Disk(name="vda", serial="x").value()
    )
    assert event.type == EventType.ITEM_CHANGED


def test_scalar_rules() -> None:
    a = OsInfo(pretty_name="Debian 12", kernel_release="6.1", kernel_version="#1")
    b = OsInfo(pretty_name="Debian 12", kernel_release="6.1", kernel_version="#2")
    # Same summary both sides: the full values are kept so the change stays visible.
    assert changes(FactKind.OS, "", a.value(), b.value()) == [
        Change(EventType.KERNEL_CHANGED, "os", a.value(), b.value())
    ]
    assert changes(FactKind.OS, "", None, a.value()) == [
        Change(EventType.OS_CHANGED, "os", None, "Debian 12")
    ]
    [event] = changes(
        FactKind.MEMORY, "", Memory(total_bytes=1).value(), Memory(total_bytes=2).value()
    )
    assert (event.type, event.old, event.new) == (EventType.MEMORY_CHANGED, "1", "2")


def test_users_and_bounded_text() -> None:
    alice = UserSession(name="alice", login_time=1.0)
    [event] = changes(FactKind.USERS, "alice", alice.value(), None)
    assert event.type == EventType.USER_LOGOUT
    huge = Package(name="x", version="9" * 5000).value()
    [event] = changes(FactKind.PACKAGES, "x" * 1000, None, huge)
    assert len(event.subject) == 255
    assert event.new is not None and len(event.new) == 1024


def test_the_digest_of_a_set_is_stable_across_releases() -> None:
    """Databases store these digests; a collector compares them after an upgrade."""
    items = (
        Package(name="b", version="1"),
        Package(name="a", version="2", arch="amd64"),
        Package(name="s\udcff\x00é", version="☃"),
    )
    pairs = [(i.identity(), i.value()) for i in reversed(items)]
    assert pairs_digest(pairs) == FactSet(FactKind.PACKAGES, items).digest()
    assert pairs_digest(pairs).hex() == "b4d360b6f26f1c31bf024cd5bb8cf2d5"
