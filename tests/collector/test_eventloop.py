import importlib.util
from typing import Any

import pytest

from collector import eventloop
from collector.config import ConfigError, from_dict


async def loop_name() -> str:
    return eventloop.running_name()


def test_auto_is_uvloop_where_it_is_installed() -> None:
    # uvloop is a dependency on Linux: a deployment that lost it should fail this test.
    assert eventloop.resolve("auto") == "uvloop"
    assert from_dict({}).service.event_loop == "auto"


@pytest.mark.parametrize("choice", ["uvloop", "asyncio"])
def test_run_uses_the_chosen_loop(choice: str) -> None:
    assert eventloop.run(loop_name(), choice) == choice


def test_without_uvloop_auto_falls_back_and_uvloop_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, *args: Any) -> Any:
        return None if name == "uvloop" else real_find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    assert eventloop.resolve("auto") == "asyncio"
    assert eventloop.run(loop_name(), "auto") == "asyncio"
    with pytest.raises(eventloop.LoopUnavailable):
        eventloop.resolve("uvloop")
    with pytest.raises(ConfigError) as info:
        from_dict({"service": {"event_loop": "uvloop"}})
    assert info.value.key == "service.event_loop"
    assert "not installed" in info.value.reason


def test_an_unknown_loop_is_refused_before_anything_runs() -> None:
    coroutine = loop_name()
    with pytest.raises(ValueError, match="trio"):
        eventloop.run(coroutine, "trio")
    assert coroutine.cr_frame is None  # closed, never awaited: no warning at exit
    with pytest.raises(ConfigError) as info:
        from_dict({"service": {"event_loop": "trio"}})
    assert info.value.key == "service.event_loop"
