"""libvirt errors onto the qga error tree, and balloon stats onto a Memory fact.

The errors are libvirt's own exception type carrying the codes and messages libvirt 9 sends
(the real ones are met in tests/vm/test_libvirt_vms.py; timeouts and "not configured" cannot
be produced on demand there).
"""

from __future__ import annotations

import pytest

from tests.vm.machines import require_module


@pytest.fixture(autouse=True)
def _binding() -> None:
    require_module("libvirt")


def error(code: int, message: str) -> Exception:
    import libvirt  # type: ignore[import-untyped,unused-ignore]

    exc = libvirt.libvirtError(message)
    exc.err = (code, libvirt.VIR_FROM_QEMU, message, 2, None, None, None, -1, -1)
    return exc


@pytest.mark.parametrize(
    ("code_name", "message", "cls_name", "reason"),
    [
        (
            "VIR_ERR_AGENT_UNRESPONSIVE",
            "Guest agent is not responding: QEMU guest agent is not connected",
            "AgentAbsent",
            "agent_absent",
        ),
        (
            "VIR_ERR_ARGUMENT_UNSUPPORTED",
            "argument unsupported: QEMU guest agent is not configured",
            "AgentAbsent",
            "agent_absent",
        ),
        (
            "VIR_ERR_AGENT_UNRESPONSIVE",
            "Guest agent is not responding: Guest agent not available for now",
            "AgentUnresponsive",
            "timeout",
        ),
        ("VIR_ERR_OPERATION_TIMEOUT", "operation timed out", "AgentUnresponsive", "timeout"),
        (
            "VIR_ERR_INTERNAL_ERROR",
            "internal error: unable to execute QEMU agent command 'guest-x': "
            "The command guest-x has not been found",
            "CommandDisabled",
            "disabled",
        ),
        (
            "VIR_ERR_INTERNAL_ERROR",
            "internal error: unable to execute QEMU agent command 'guest-file-open': "
            "failed to open file '/nope'",
            "AgentError",
            "agent_error",
        ),
        (
            "VIR_ERR_OPERATION_DENIED",
            "operation forbidden: read only access prevents virDomainQemuAgentCommand",
            "LibvirtFailure",
            "libvirt",
        ),
        ("VIR_ERR_NO_DOMAIN", "Domain not found", "LibvirtFailure", "libvirt"),
    ],
)
def test_map_error(code_name: str, message: str, cls_name: str, reason: str) -> None:
    import libvirt

    from collector.libvirt.session import map_error

    mapped = map_error(error(getattr(libvirt, code_name), message), "guest-x")
    assert type(mapped).__name__ == cls_name
    assert mapped.reason == reason


def test_non_libvirt_exception_is_a_counted_libvirt_failure() -> None:
    from collector.libvirt.session import map_error

    assert map_error(RuntimeError("pool shut down"), "guest-ping").reason == "libvirt"


def test_balloon_memory_in_bytes_with_its_source() -> None:
    from collector.libvirt.driver import balloon_memory

    memory = balloon_memory(
        {"actual": 131072, "available": 82032, "usable": 47412, "unused": 40776}
    )
    assert memory is not None
    assert memory.source == "balloon"
    assert memory.total_bytes == 82032 * 1024
    assert memory.available_bytes == 47412 * 1024
    assert memory.free_bytes == 40776 * 1024


def test_balloon_memory_without_guest_stats_uses_the_balloon_size() -> None:
    from collector.libvirt.driver import balloon_memory

    memory = balloon_memory({"actual": 131072, "rss": 199664})
    assert memory is not None and memory.total_bytes == 131072 * 1024
    assert memory.available_bytes is None and memory.free_bytes is None


@pytest.mark.parametrize(
    "stats",
    [None, [], {}, {"rss": 5}, {"actual": -1}, {"actual": "lots"}, {"actual": 2**60}],
)
def test_balloon_memory_rejects_what_is_not_a_size(stats: object) -> None:
    from collector.libvirt.driver import balloon_memory

    assert balloon_memory(stats) is None
