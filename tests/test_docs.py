"""The README's examples and the figures the docs quote, held to the program.

Every example command of the README must be one the CLI accepts, naming files that
exist; the quick ones are run and must show what their comment says. Figures quoted
in more than one document come from one source (docs/calibration.md's tables) and
must agree with it.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import click
import pytest

from relay.cli import main
from relay.cli.options import cli
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")
CALIBRATION = (ROOT / "docs" / "calibration.md").read_text(encoding="utf-8")


def examples() -> list[list[str]]:
    """The README's `.venv/bin/relaysim ...` commands, as argument lists."""
    found = []
    for line in README.splitlines():
        if line.startswith(".venv/bin/relaysim "):
            words = shlex.split(line, comments=True)
            found.append([w for w in words[1:] if w != "&"])
    return found


@pytest.mark.parametrize("args", examples(), ids=lambda a: " ".join(a)[:60])
def test_every_readme_example_is_a_command_the_cli_takes(args: list[str]) -> None:
    """Each example parses (its command, options and values exist) and the files it
    reads are in the checkout, so it runs as printed."""
    ctx = click.Context(cli, info_name="relaysim")
    name, command, rest = cli.resolve_command(ctx, list(args))
    assert command is not None
    assert name is not None
    try:
        command.make_context(name, rest, parent=ctx)
    except click.UsageError as exc:
        pytest.fail(f"{' '.join(args)}: {exc.format_message()}")
    for word in rest:
        if word.startswith("configs/"):
            assert (ROOT / word).is_file(), f"{word} is not in the checkout"


def test_the_legacy_smoke_example_shows_the_difference_it_claims(tmp_path: Path) -> None:
    """The README's stalled-HSM smoke day: legacy hangs about 23 minutes with
    timeouts; the fixed design, same day, same stall, has neither."""
    [args] = [a for a in examples() if "hsm_stall" in " ".join(a) and a[0] == "replay"]
    figures = {}
    for design in ("legacy", "fixed"):
        out = tmp_path / f"{design}.json"
        run = [*args, "--quiet", "--json", str(out)]
        run[run.index("--design") + 1] = design
        main([str(ROOT / a) if a.startswith("configs/") else a for a in run])
        figures[design] = json.loads(out.read_text())
    legacy, fixed = figures["legacy"], figures["fixed"]
    assert legacy["hangs"] == 1
    assert 15 < legacy["outage_minutes"] < 35  # "~23 min"
    assert legacy["timeouts"] > 10
    assert (fixed["outage_minutes"], fixed["timeouts"]) == (0.0, 0)
    readme = re.search(r"legacy hangs ~(\d+) min.*?\((\d+) timeouts\)", README, re.S)
    assert readme is not None
    assert abs(int(readme.group(1)) - legacy["outage_minutes"]) < 2
    assert int(readme.group(2)) == legacy["timeouts"]


def _calibration_mean(label: str) -> float:
    """The mean in docs/calibration.md's table row for `label` (its model column)."""
    row = next(line for line in CALIBRATION.splitlines() if line.startswith(f"| {label}"))
    model = row.split("|")[3]
    return float(model.split("(")[0].replace(",", "").strip())


def test_the_january_figures_agree_across_the_docs() -> None:
    """The January crash and hang counts the README quotes are calibration.md's
    (the one source: its table of fitted and predicted figures), rounded."""
    crashes = _calibration_mean("unallocated-free crashes, 13 Jan – 19 Mar")
    quoted = re.search(r"about\s+(\d+) crashes and (\d+) hangs on `legacy` \(seeds 1–5", README)
    assert quoted is not None
    hangs_row = next(
        line for line in CALIBRATION.splitlines() if line.startswith("| core-contention hangs")
    )
    hangs = float(hangs_row.split("|")[3].split("(")[0].strip())
    assert (int(quoted.group(1)), int(quoted.group(2))) == (round(crashes), round(hangs))


def test_the_29_march_and_18_april_figures_agree_across_the_docs() -> None:
    """The 29 March overflow mean and the 18 April prediction appear the same in
    calibration.md's summary table and in its detailed sections."""
    march = _calibration_mean("overflow events at the relays, 29 March 2016")
    april = _calibration_mean("overflow events at the relays, 18 April 2016")
    assert f"**{march:,.0f} (" in CALIBRATION  # the fit's table row, in bold
    assert f"| mean | **{april:g}** |" in CALIBRATION
