from pathlib import Path

import pytest

from collector.config import DEFAULT_LISTEN, ConfigError, from_dict, load, parse_duration


def test_empty_file_is_valid(tmp_path: Path) -> None:
    path = tmp_path / "empty.toml"
    path.write_text("")
    config = load(path)
    assert config.http.listen == DEFAULT_LISTEN
    assert config.storage.url == "sqlite:///guestwatch.db"
    assert config.polling.heartbeat_interval == 5.0
    assert config.polling.packages_interval == 3600.0
    assert config.polling.max_reply_bytes == 10 * 1024 * 1024
    assert config.liveness.late_after == 2
    assert config.liveness.down_after == 6
    assert config.service.hypervisor  # defaults to this host's name


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("5s", 5), ("2m", 120), ("1h", 3600), (3, 3), (0.25, 0.25), ("1d", 86400)],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"polling": {"users_interval": "ten"}}, "polling.users_interval"),
        ({"polling": {"heartbeat_interval": 0}}, "polling.heartbeat_interval"),
        ({"polling": {"max_reply_bytes": "big"}}, "polling.max_reply_bytes"),
        ({"polling": {"bogus": 1}}, "polling.bogus"),
        ({"liveness": {"late_after": 6, "down_after": 2}}, "liveness.down_after"),
        ({"http": {"listen": "nohost"}}, "http.listen"),
        ({"storage": {"url": "guestwatch.db"}}, "storage.url"),
        ({"targets": [{"name": "a", "socket": "/x", "protocol": "vnc"}]}, "targets[0].protocol"),
        ({"targets": [{"name": "a"}]}, "targets[0].socket"),
        ({"targets": [{"name": "bad name", "socket": "/x"}]}, "targets[0].name"),
        (
            {"targets": [{"name": "a", "socket": "/x"}, {"name": "a", "socket": "/y"}]},
            "targets[1].name",
        ),
        (
            {"discovery": {"sockets": [{"glob": "/x/*", "mode": "sometimes"}]}},
            "discovery.sockets[0].mode",
        ),
        ({"nonsense": {}}, "nonsense"),
    ],
)
def test_errors_name_the_key(data: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        from_dict(data)
    assert info.value.key == key
    assert str(info.value).startswith(key + ":")


def test_full_example(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        """
[service]
hypervisor = "hv-1"
[storage]
url = "sqlite:////var/lib/guestwatch/gw.db"
[http]
listen = "0.0.0.0:9958"
[polling]
heartbeat_interval = "2s"
command_timeout = "500ms"
[liveness]
late_after = 3
down_after = 5
[[targets]]
name = "web-1"
socket = "/run/guestwatch/web-1.qga"
mode = "per-poll"
[[discovery.sockets]]
glob = "/var/run/qemu-server/*.qga"
[discovery.libvirt]
uri = ""
"""
    )
    config = load(path)
    assert config.service.hypervisor == "hv-1"
    assert config.http.port == 9958
    assert config.polling.command_timeout == 0.5
    assert config.targets[0].mode == "per-poll"
    assert config.socket_discovery[0].mode == "per-poll"


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[service\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load(path)
