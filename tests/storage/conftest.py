"""Fixtures: a migrated SQLite store in a temporary directory, and record builders."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from collector.facts import Fact, FactKind, FactSet, fact_set
from storage.records import InventoryObserved, VmRef
from storage.repository import Store

T0 = 1_700_000_000.0


def vm(name: str = "web-1", uuid: str | None = None, hypervisor: str = "host-a") -> VmRef:
    key = uuid if uuid else f"{hypervisor}/{name}"
    return VmRef(key=key, name=name, hypervisor=hypervisor, protocol="qga", uuid=uuid)


def observed(ref: VmRef, at: float, kind: FactKind, items: Iterable[Fact]) -> InventoryObserved:
    return InventoryObserved(vm=ref, at=at, facts=fact_set(kind, items))


def digest_of(kind: FactKind, items: Iterable[Fact]) -> bytes:
    return FactSet(kind, tuple(items)).digest()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(f"sqlite:///{tmp_path / 'db' / 'guestwatch.db'}")
    s.upgrade()
    yield s
    s.close()
