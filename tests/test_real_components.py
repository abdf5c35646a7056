"""The harness that starts real components: readiness means listening, not a socket file."""

from __future__ import annotations

import socket
from pathlib import Path

from tests.support.real import is_listening


def test_a_bound_socket_is_not_ready_until_it_listens(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        assert path.exists()
        assert not is_listening(path)  # a client connecting now would be refused
        server.listen()
        assert is_listening(path)
    assert not is_listening(tmp_path / "other.sock")
