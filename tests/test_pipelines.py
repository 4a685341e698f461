"""The CI pipelines of ops/ci/ (docs/ci.md): valid for GitHub Actions and GitLab CI
by their own schemas, and running commands the CLI takes whose reports they keep.

The schemas are those check-jsonschema ships (`--builtin-schema`), read offline:
the checker runs with every proxy pointed at a closed loopback port, so a schema
it tried to download would fail the test rather than pass it from the network.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from relay.cli.options import cli
from tests.conftest import ROOT

GITHUB = ROOT / "ops" / "ci" / "github-actions.yml"
GITLAB = ROOT / "ops" / "ci" / "gitlab-ci.yml"
SCHEMAS = {GITHUB: "vendor.github-workflows", GITLAB: "vendor.gitlab-ci"}
CHECKER = Path(sys.executable).parent / "check-jsonschema"
NOWHERE = "http://127.0.0.1:9"  # the discard port: nothing listens there


def validate(path: Path, schema: str) -> subprocess.CompletedProcess[str]:
    """check-jsonschema on `path` with its built-in `schema`, with no way out."""
    env = {**os.environ, "HTTP_PROXY": NOWHERE, "HTTPS_PROXY": NOWHERE, "NO_PROXY": ""}
    env |= {k.lower(): v for k, v in env.items() if k.endswith("_PROXY")}
    argv = [str(CHECKER), "--builtin-schema", schema, str(path)]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)


@pytest.mark.parametrize("path", [GITHUB, GITLAB], ids=["github", "gitlab"])
def test_each_pipeline_is_valid_by_its_platforms_schema(path: Path) -> None:
    """ops/ci's GitHub workflow and GitLab pipeline pass check-jsonschema's schemas."""
    done = validate(path, SCHEMAS[path])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ok -- validation done" in done.stdout


# A mistake each schema must catch: a job with no runner, an artifact kept "sometimes".
BROKEN = [
    (GITHUB, "    runs-on: ubuntu", "    runs_on: ubuntu", "'runs-on' is a required"),
    (GITLAB, "    when: always  #", "    when: sometimes  #", "'sometimes' is not one of"),
]


@pytest.mark.parametrize(("path", "good", "bad", "said"), BROKEN, ids=["github", "gitlab"])
def test_a_broken_copy_fails_validation(
    path: Path, good: str, bad: str, said: str, tmp_path: Path
) -> None:
    """The same file with one mistake fails, naming it: the check has teeth."""
    text = path.read_text(encoding="utf-8")
    assert good in text
    broken = tmp_path / path.name
    broken.write_text(text.replace(good, bad), encoding="utf-8")
    done = validate(broken, SCHEMAS[path])
    assert done.returncode == 1, done.stdout + done.stderr
    assert said in done.stdout


def relaysim_lines(scripts: list[str]) -> list[list[str]]:
    """The `.venv/bin/relaysim ...` commands of shell `scripts`, as argument lists."""
    found = []
    for script in scripts:
        for line in script.replace("\\\n", " ").splitlines():
            if line.strip().startswith(".venv/bin/relaysim "):
                found.append(shlex.split(line)[1:])
    return found


def option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def parses(args: list[str]) -> None:
    """`args` is a command the CLI takes, naming files that are in the checkout."""
    ctx = click.Context(cli, info_name="relaysim")
    name, command, rest = cli.resolve_command(ctx, list(args))
    assert command is not None
    assert name is not None
    assert (ROOT / rest[0]).is_file(), rest[0]
    command.make_context(name, list(rest), parent=ctx)  # parses, or UsageError


def test_the_github_workflow_publishes_what_its_commands_write() -> None:
    """GitHub: check writes the JUnit file the report step reads and the artifact
    keeps; the hunt writes its picture into the artifact kept even on failure."""
    jobs: dict[str, Any] = yaml.safe_load(GITHUB.read_text(encoding="utf-8"))["jobs"]
    for job in jobs.values():
        scripts = [step["run"] for step in job["steps"] if "run" in step]
        [args] = relaysim_lines(scripts)
        parses(args)
        uses = {step["uses"].split("@")[0]: step for step in job["steps"] if "uses" in step}
        kept = uses["actions/upload-artifact"]
        assert kept["if"] == "${{ !cancelled() }}"
        if args[0] == "check":
            junit = option(args, "--junit")
            assert uses["mikepenz/action-junit-report"]["with"]["report_paths"] == junit
        else:
            assert args[0] == "hunt"
            junit = option(args, "--report")
        assert junit.startswith(kept["with"]["path"])


def test_the_gitlab_pipeline_publishes_what_its_commands_write() -> None:
    """GitLab: check writes the file `artifacts:reports:junit` names; the hunt writes
    the picture its artifacts keep; both kept when the job fails."""
    doc: dict[str, Any] = yaml.safe_load(GITLAB.read_text(encoding="utf-8"))
    check, hunt = doc["regression"], doc["race-picture"]
    [check_args] = relaysim_lines(check["script"])
    [hunt_args] = relaysim_lines(hunt["script"])
    for args in (check_args, hunt_args):
        parses(args)
    assert check["artifacts"]["reports"]["junit"] == option(check_args, "--junit")
    assert option(hunt_args, "--report") in hunt["artifacts"]["paths"]
    assert check["artifacts"]["when"] == hunt["artifacts"]["when"] == "always"


def test_docs_ci_quotes_both_pipelines_as_they_are() -> None:
    """docs/ci.md shows each file whole, exactly: a change to a pipeline must reach
    the page that explains it."""
    page = (ROOT / "docs" / "ci.md").read_text(encoding="utf-8")
    for path in (GITHUB, GITLAB):
        quoted = f"`ops/ci/{path.name}`:\n\n```yaml\n{path.read_text(encoding='utf-8')}```\n"
        assert quoted in page, path.name
