"""schemathesis, run for real against the live service's /openapi.json: whatever it generates
from the document (bounded examples per operation), no answer is a 500 and every answer matches
the documented status codes, content types and schemas."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.simulator import Fleet
from collector.daemon import running
from collector.facts import FactKind
from tests.support.service import fast_config, wait_until

#: Examples per operation: ten operations stay well under a minute.
MAX_EXAMPLES = 25
CHECKS = ",".join(
    (
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
    )
)


@pytest.fixture
def base() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="gwst-", dir="/tmp"))
    (path / "sockets").mkdir()
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def schemathesis_binary() -> str:
    found = shutil.which("schemathesis") or str(Path(sys.executable).parent / "schemathesis")
    assert Path(found).exists(), "schemathesis is a test dependency: pip install -e '.[test]'"
    return found


async def test_generated_requests_never_get_a_server_error(base: Path) -> None:
    fleet = Fleet(base / "sockets", 2, seed=7)
    await fleet.start()
    try:
        async with running(fast_config(base)) as svc:
            state = svc.service.fleet
            await wait_until(
                lambda: (
                    len(state.vms) == 2
                    and all(
                        vm.kind(FactKind.PACKAGES).digest is not None for vm in state.vms.values()
                    )
                ),
                30,
                "first inventory",
            )
            run = await asyncio.to_thread(
                subprocess.run,
                [
                    schemathesis_binary(),
                    "run",
                    f"{svc.url}/openapi.json",
                    "--checks",
                    CHECKS,
                    "--max-examples",
                    str(MAX_EXAMPLES),
                    "--seed",
                    "20261127",
                    "--request-timeout",
                    "20",
                    "--no-color",
                ],
                capture_output=True,
                text=True,
                timeout=240,
                cwd=base,
            )
    finally:
        await fleet.stop()
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert "Tested: 10" in run.stdout, run.stdout[-3000:]  # every operation was exercised
