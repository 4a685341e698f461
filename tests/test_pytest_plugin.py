"""relaysim's pytest plugin as a user's suite meets it: loaded from the installed
package's entry point, the docs' example module passing on `fixed` and failing on
`legacy`, paths read from the root folder, the served tier only under virtual time."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest
import trio.testing

from relay.api import Result
from relay.pytest_plugin import Served
from tests.conftest import CONFIGS, ROOT

EXAMPLE = ROOT / "docs" / "examples" / "test_with_relaysim.py"

# The legacy copy's failures are shown as drawn: shrinking them costs seconds.
NO_SHRINK = """
from hypothesis import Phase, settings

settings.register_profile("no-shrink", phases=[Phase.explicit, Phase.generate])
settings.load_profile("no-shrink")
"""


def test_the_example_module_passes_on_fixed_and_fails_on_legacy(pytester: pytest.Pytester) -> None:
    """In a pytest of its own (a subprocess; no -p, no conftest naming the plugin)
    the example finds the fixtures through the installed entry point and passes; the
    same module with `DESIGN = "legacy"` fails every test, with replay commands."""
    pytester.makeini("[pytest]\naddopts = -ra --strict-markers\nfilterwarnings = error\n")
    (pytester.path / "configs").mkdir()
    (pytester.path / "configs" / "smoke.yaml").write_bytes((CONFIGS / "smoke.yaml").read_bytes())
    text = EXAMPLE.read_text(encoding="utf-8")
    (pytester.path / EXAMPLE.name).write_text(text, encoding="utf-8")
    on_legacy = text.replace('DESIGN = "fixed"', 'DESIGN = "legacy"')
    assert on_legacy != text
    legacy = pytester.mkdir("legacy")
    (legacy / "test_with_relaysim_on_legacy.py").write_text(on_legacy, encoding="utf-8")
    (legacy / "conftest.py").write_text(NO_SHRINK, encoding="utf-8")
    result = pytester.runpytest_subprocess()
    result.stdout.fnmatch_lines(["plugins:*relaysim-*"])  # from the entry point
    result.assert_outcomes(passed=3, failed=3)
    failed = [line for line in result.outlines if line.startswith("FAILED ")]
    assert len(failed) == 3
    assert all(line.startswith("FAILED legacy/") for line in failed), failed
    out = result.stdout.str()
    assert "replay with: relaysim replay configs/smoke.yaml --design legacy --seed 3" in out
    assert "FAIL outage_minutes < 1 (measured " in out


def test_a_relative_path_is_read_from_the_root_folder_wherever_pytest_runs(
    relaysim_replay: Callable[..., Result], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """From another folder, `configs/smoke.yaml` is still the checkout's, and the
    replay command names it from that folder."""
    monkeypatch.chdir(tmp_path)
    result = relaysim_replay("configs/smoke.yaml", seed=2)
    assert result.scenario.name == "smoke"
    argv = shlex.split(result.command or "")
    assert (tmp_path / argv[2]).resolve() == (CONFIGS / "smoke.yaml").resolve()
    assert argv[argv.index("--seed") + 1] == "2"


async def test_the_server_fixture_refuses_the_real_clock(
    relaysim_server: Callable[..., AbstractAsyncContextManager[Served]],
) -> None:
    """Without pytest-trio's autojump_clock the served tier is refused at once with
    how to fix it, rather than loading for as many real seconds as virtual ones."""
    with pytest.raises(pytest.fail.Exception, match="give the test pytest-trio's autojump_clock"):
        async with relaysim_server(CONFIGS / "smoke.yaml"):
            pass


async def test_the_admin_client_injects_clears_and_reports_refusals(
    relaysim_server: Callable[..., AbstractAsyncContextManager[Served]],
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Through the served tier's admin endpoint: a crash on legacy stays in effect
    until cleared, and a fault the endpoint refuses is an AssertionError with its status."""
    async with relaysim_server(CONFIGS / "smoke.yaml", {"design": "legacy"}) as served:
        await served.admin.inject("crash", node=2)
        crashed = await served.admin.state()
        await served.admin.clear()
        cleared = await served.admin.state()
        with pytest.raises(AssertionError, match=r"POST /faults: 4\d\d .*meteor"):
            await served.admin.inject("meteor", node=1)
    assert [(f["kind"], f["node"]) for f in crashed["faults"]] == [("crash", 2)]
    assert cleared["faults"] == []
