"""The CLI's queries over the same filled database: diff, packages, show --at, events, db prune;
table, JSON and CSV output; tables fit 80 columns."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from collector.cli import main
from tests.api.conftest import Filled
from tests.api.test_api import expected_changes, upgraded

pytestmark = pytest.mark.real


@pytest.fixture
def cli(filled: Filled, tmp_path: Path, capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    config = tmp_path / "gw.toml"
    config.write_text(f'[storage]\nurl = "{filled.url}"\n')

    def run(*args: str) -> str:
        capsys.readouterr()
        assert main(["--config", str(config), *args]) == 0
        return capsys.readouterr().out

    return run


def test_diff_json_table_and_csv(cli, filled: Filled) -> None:  # type: ignore[no-untyped-def]
    between = filled.between.isoformat()
    items = json.loads(cli("diff", filled.debian, between, "now", "--output", "json"))
    got = {
        (i["change"], (i["new"] or i["old"])["name"], (i["new"] or i["old"])["arch"]) for i in items
    }
    assert got == expected_changes(filled.before[filled.debian], filled.after[filled.debian])

    table = cli("diff", filled.debian, between, "now")
    assert table.splitlines()[0].split()[:3] == ["KIND", "ITEM", "CHANGE"]
    assert len(table.splitlines()) == len(items) + 1
    assert max(len(line) for line in table.splitlines()) <= 80

    rows = list(csv.reader(io.StringIO(cli("diff", filled.debian, between, "now", "-o", "csv"))))
    assert rows[0] == ["kind", "item", "change", "old", "new"]
    assert len(rows) == len(items) + 1


def test_packages_older_than_and_at(cli, filled: Filled) -> None:  # type: ignore[no-untyped-def]
    package, old, new = upgraded(filled, filled.debian)
    now = json.loads(cli("packages", package, "--output", "json"))
    assert {h["domain"]: h["version"] for h in now}[filled.debian] == new
    older = json.loads(cli("packages", package, "--older-than", new, "-o", "json"))
    assert filled.debian not in {h["domain"] for h in older}
    then = json.loads(
        cli(
            "packages",
            package,
            "--older-than",
            new,
            "--at",
            filled.between.isoformat(),
            "-o",
            "json",
        )
    )
    assert {h["domain"]: h["version"] for h in then}[filled.debian] == old
    table = cli("packages", package)
    assert filled.debian in table
    assert max(len(line) for line in table.splitlines()) <= 80


def test_every_query_fits_80_columns_and_speaks_csv(cli, filled: Filled) -> None:  # type: ignore[no-untyped-def]
    for args in (
        ("vms",),
        ("show", filled.real),
        ("show", filled.debian, "--at", filled.between.isoformat()),
        ("history", filled.debian, "--kind", "packages"),
        ("events", "--limit", "50"),
    ):
        table = cli(*args)
        assert max(len(line) for line in table.splitlines()) <= 80, args
        rows = list(csv.reader(io.StringIO(cli(*args, "--output", "csv"))))
        assert len(rows) > 1, args
        assert all(len(row) == len(rows[0]) for row in rows), args


def test_db_prune_runs(cli) -> None:  # type: ignore[no-untyped-def]
    # Everything in this database is minutes old: nothing is folded or deleted.
    assert "folded 0 samples" in cli("db", "prune")
