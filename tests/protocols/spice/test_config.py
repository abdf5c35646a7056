"""A spice target is configured like others, always persistent, and found by the service."""

from __future__ import annotations

import pytest

from collector.config import ConfigError, from_dict
from collector.protocols.spice import SpiceDriver
from collector.service import default_driver_factory
from collector.targets import discover


def test_spice_target_defaults_to_persistent_and_plugs_in() -> None:
    config = from_dict(
        {
            "polling": {"command_timeout": "2s"},
            "targets": [{"name": "desk", "protocol": "spice", "socket": "/run/desk.spice"}],
            "discovery": {"sockets": [{"glob": "/nonexistent/*.spice", "protocol": "spice"}]},
        }
    )
    assert config.targets[0].mode == "persistent"
    assert config.socket_discovery[0].mode == "persistent"  # not the qga glob default
    target = discover(config)["desk"]
    driver = default_driver_factory(target, config, lambda reason: None)
    assert isinstance(driver, SpiceDriver)
    assert driver.socket == "/run/desk.spice" and driver.write_timeout == 2.0


@pytest.mark.parametrize("section", ["targets", "sockets"])
def test_per_poll_spice_is_refused_naming_the_key(section: str) -> None:
    entry = {"protocol": "spice", "mode": "per-poll"}
    data: dict[str, object]
    if section == "targets":
        data = {"targets": [{"name": "desk", "socket": "/run/x", **entry}]}
        key = "targets[0].mode"
    else:
        data = {"discovery": {"sockets": [{"glob": "/run/*.spice", **entry}]}}
        key = "discovery.sockets[0].mode"
    with pytest.raises(ConfigError) as info:
        from_dict(data)
    assert info.value.key == key
