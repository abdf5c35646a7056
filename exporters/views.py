"""Plain-data views of the in-memory state, shared by the API and the CLI's live table."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from collector.facts import FactKind, Hostname
from collector.state import VmState


def iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, UTC).isoformat() if ts is not None else None


def domain_summary(vm: VmState) -> dict[str, Any]:
    """State, OS, last heartbeat and per-kind availability of one VM."""
    os = vm.os
    hostname = vm.facts(FactKind.HOSTNAME)
    host = hostname.items[0] if hostname and hostname.items else None
    return {
        "domain": vm.target.name,
        "uuid": vm.target.uuid,
        "hypervisor": vm.target.hypervisor,
        "protocol": vm.target.protocol,
        "state": vm.liveness.state.value,
        "state_since": iso(vm.liveness.since),
        "last_heartbeat": iso(vm.liveness.last_heartbeat),
        "os": os.pretty_name if os else None,
        "hostname": host.name if isinstance(host, Hostname) else None,
        "facts": {
            kind.value: {
                "status": ks.status,
                "reason": ks.reason,
                "last_success": iso(ks.last_success),
            }
            for kind, ks in sorted(vm.kinds.items())
        },
    }
