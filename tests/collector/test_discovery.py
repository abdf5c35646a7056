"""Socket discovery and the service's scan: what counts as a VM's channel, and what goes."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from collector.config import from_dict
from collector.liveness import State
from collector.service import Service
from collector.targets import discover, name_from_socket, socket_exists


class _IdleDriver:
    async def heartbeat(self) -> None:
        return None

    async def close(self) -> None:
        return None


def _bind(path: Path) -> None:
    """A socket file with no listener behind it (bound, then closed): what a scan sees."""
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))


def _config(tmp_path: Path, sockets: Path) -> dict[str, object]:
    return {
        "storage": {"url": f"sqlite:///{tmp_path / 'gw.db'}"},
        "discovery": {"sockets": [{"glob": str(sockets / "*.qga"), "protocol": "qga"}]},
        "targets": [
            {"name": "static-here", "protocol": "qga", "socket": str(sockets / "static.sock")},
            {"name": "static-absent", "protocol": "qga", "socket": str(sockets / "none.sock")},
        ],
    }


def test_names_come_from_the_file_name_without_its_suffixes() -> None:
    assert name_from_socket("/run/x/web-1.qga") == "web-1"
    assert name_from_socket("/run/x/web-1.org.qemu.guest_agent.0") == "web-1"
    assert name_from_socket("/run/x/plain") == "plain"
    assert name_from_socket("/run/x/.hidden.qga") is None  # an empty name
    assert name_from_socket("/run/x/-dash.qga") is None


def test_discovery_lists_sockets_only_and_static_targets_always(tmp_path: Path) -> None:
    sockets = tmp_path / "run"
    sockets.mkdir()
    _bind(sockets / "web-1.qga")
    _bind(sockets / "static.sock")
    (sockets / "notasocket.qga").write_text("a regular file matching the glob")
    (sockets / "dir.qga").mkdir()
    _bind(sockets / "-bad.qga")
    assert socket_exists(str(sockets / "web-1.qga"))
    assert not socket_exists(str(sockets / "notasocket.qga"))
    assert not socket_exists(str(sockets / "missing.qga"))

    found = discover(from_dict(_config(tmp_path, sockets)))
    assert sorted(found) == ["static-absent", "static-here", "web-1"]
    assert not found["web-1"].static and found["web-1"].socket == str(sockets / "web-1.qga")
    assert found["static-absent"].static


def test_scan_starts_present_channels_and_marks_vanished_ones_gone(tmp_path: Path) -> None:
    sockets = tmp_path / "run"
    sockets.mkdir()
    _bind(sockets / "web-1.qga")
    _bind(sockets / "web-2.qga")
    _bind(sockets / "static.sock")
    config = from_dict(_config(tmp_path, sockets))
    service = Service(config, store=None, driver_factory=lambda *a: _IdleDriver())  # type: ignore[arg-type]
    service.writer.submit = lambda record: True  # type: ignore[method-assign]

    async def scan() -> None:  # the service scans on its loop
        service.scan()

    asyncio.run(scan())
    assert sorted(service.runners) == ["static-here", "web-1", "web-2"]  # not the absent one
    (sockets / "web-2.qga").unlink()
    (sockets / "static.sock").unlink()
    asyncio.run(scan())
    states = {name: runner.vm.liveness.state for name, runner in service.runners.items()}
    assert states["web-2"] is State.GONE and states["static-here"] is State.GONE
    assert states["web-1"] is not State.GONE
    _bind(sockets / "web-2.qga")
    asyncio.run(scan())
    assert service.runners["web-2"].vm.liveness.state is State.UNKNOWN  # rediscovered
