"""`Package.value` is formatted directly for speed; it must stay byte-equal to the generic
`Fact.value` (canonical JSON), since stored rows and digests compare by it."""

from __future__ import annotations

import json

import pytest

from collector.facts import Fact, Package

TEXTS = [
    "",
    "bash",
    "1:2.36-9+deb12u4",
    'quote " backslash \\ slash /',
    "tab\tnewline\ncontrol\x01\x1f nul\x00",
    "Débian ☃ 日本語 😀",
    "lone surrogate \udcff",
    "x" * 5000,
]


@pytest.mark.parametrize("text", TEXTS)
def test_package_value_equals_the_generic_canonical_json(text: str) -> None:
    for package in (
        Package(name=text),
        Package(name="n", version=text, arch="amd64", manager="dpkg", raw=text),
        Package(name=text, version=text, arch=text, manager=text, raw=text),
    ):
        assert package.value() == Fact.value(package)
        assert json.loads(package.value()) == package.to_dict()


def test_a_field_that_is_not_a_string_gets_the_generic_form() -> None:
    package = Package(name="n", version=3)  # type: ignore[arg-type]  # a misbehaving parser
    assert (
        package.value()
        == Fact.value(package)
        == ('{"arch":"","manager":"","name":"n","raw":"","version":3}')
    )
