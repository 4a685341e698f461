"""Every command against wrong input: exit 2 and one line naming what is wrong.

Never a traceback, never a Python type name, never a default day run in place of
a file that holds nothing. Commands that need a live server are covered in
tests/test_serve_cli.py; here nothing listens, so nothing takes long.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from relay.cli import main
from tests.conftest import CONFIGS

SMOKE = str(CONFIGS / "smoke.yaml")


@pytest.fixture
def bad(tmp_path: Path) -> Path:
    """A folder of wrong inputs: binary, empty, a list, sections of the wrong shape,
    results that are not results."""
    (tmp_path / "binary.yaml").write_bytes(b"\x00\xff\xfe\x80 binary")
    (tmp_path / "empty.yaml").write_text("")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    (tmp_path / "section.yaml").write_text("relays: 5\n")
    (tmp_path / "events.yaml").write_text("operators:\n  - [1]\n")
    (tmp_path / "nodate.json").write_text(json.dumps({"schema": "relaysim.summary/3"}))
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "hunt.json").write_text(json.dumps({"schema": "relaysim.hunt/1"}))
    (tmp_path / "text.json").write_text("not json")
    (tmp_path / "misspelt-axis.yaml").write_text(f"base: {SMOKE}\ngrid:\n  relays.cuont: [1, 2]\n")
    return tmp_path


CASES = [
    # replay: files
    (["replay", "{bad}/missing.yaml"], "{bad}/missing.yaml: no such file"),
    (["replay", "{bad}/binary.yaml"], "{bad}/binary.yaml: not UTF-8 text"),
    (["replay", "{bad}/empty.yaml"], "{bad}/empty.yaml: the file is empty"),
    (["replay", "{bad}/list.yaml"], "{bad}/list.yaml: expected a mapping of keys at the top"),
    (["replay", "{bad}/section.yaml"], "{bad}/section.yaml: relays: expected a mapping of keys"),
    (["replay", "{bad}/events.yaml"], "{bad}/events.yaml: operators.0: expected a mapping"),
    (["replay", "{bad}"], "File '{bad}' is a directory"),
    # replay: overrides and options
    (["replay", SMOKE, "--set", "relays.count=true"], "relays.count: expected a number, got True"),
    (["replay", SMOKE, "--set", "load.requests=0"], "load.requests: expected a number that is"),
    (["replay", SMOKE, "--set", "relays.cuont=2"], "relays.cuont: unknown key"),
    (["replay", SMOKE, "--set", "relays.count"], "--set 'relays.count': expected KEY=VALUE"),
    (["replay", SMOKE, "--json", SMOKE], f"--json {SMOKE}: is an input of this command"),
    (["replay", SMOKE, "--report", "/no/such/dir/r.html"], "--report /no/such/dir/r.html: dir"),
    (["replay", SMOKE, "--json", "/no/such/dir/r.json"], "--json /no/such/dir/r.json: dir"),
    (["replay", SMOKE, "--engine", "warp"], "Invalid value for '--engine'"),
    (["replay", SMOKE, "--seed", "-1"], "Invalid value for '--seed'"),
    (["replay", SMOKE, "--log-level", "debug"], "Invalid value for '--log-level'"),
    # hunt
    (["hunt", "{bad}/binary.yaml"], "{bad}/binary.yaml: not UTF-8 text"),
    (["hunt", SMOKE, "--json", SMOKE], f"--json {SMOKE}: is an input of this command"),
    # sweep: a misspelt axis is refused before any point runs
    (["sweep", "{bad}/misspelt-axis.yaml"], "point 'relays.cuont=1'"),
    (["sweep", "{bad}/empty.yaml"], "{bad}/empty.yaml: the file is empty"),
    # report
    (["report", "{bad}/nodate.json", "--html", "{bad}/r.html"], "nodate.json: field 'date' is"),
    (["report", "{bad}/list.json", "--html", "{bad}/r.html"], "list.json: not a relaysim result"),
    (["report", "{bad}/hunt.json", "--html", "{bad}/r.html"], "hunt.json: field 'scenario_file'"),
    (["report", "{bad}/text.json", "--html", "{bad}/r.html"], "{bad}/text.json: not JSON"),
    (["report", "{bad}/missing.json", "--html", "{bad}/r.html"], "{bad}/missing.json: no such"),
    (["report", "{bad}/list.json", "--html", "{bad}/list.json"], "is an input of this command"),
    # serve, load, fault: nothing listening
    (["serve", "{bad}/list.yaml"], "{bad}/list.yaml: expected a mapping of keys at the top"),
    (["load", SMOKE, "--target", "nohost"], "--target 'nohost': expected HOST:PORT"),
    (["load", SMOKE, "--target", "127.0.0.1:1", "--rate", "5", "--speed", "2"], "choose one"),
    (["load", SMOKE, "--target", "127.0.0.1:1", "--quiet"], "cannot connect to 127.0.0.1:1"),
    (["fault", "--admin", "localhost", "show"], "--admin 'localhost': expected HOST:PORT"),
    (["fault", "--admin", "127.0.0.1:1", "show"], "cannot reach the admin endpoint"),
    (["fault", "--admin", "127.0.0.1:1", "inject"], "inject: name the fault KIND"),
    (["fault", "--admin", "127.0.0.1:1", "clear"], "fault clear: no admin token"),
]


@pytest.mark.parametrize(("args", "expected"), CASES)
def test_wrong_input_gets_one_line_and_exit_2(
    args: list[str],
    expected: str,
    bad: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Each command, given a wrong input, exits 2 with one line starting
    `relaysim:` that names the problem, and no traceback."""
    monkeypatch.setenv("RELAYSIM_STATE", str(bad / "state"))
    argv = [a.format(bad=bad) for a in args]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    captured = capsys.readouterr()
    err = captured.err
    assert exc.value.code == 2, err
    assert err.count("\n") == 1, err
    assert err.startswith("relaysim: ")
    assert expected.format(bad=bad) in err
    assert "Traceback" not in err + captured.out


def test_relaysim_alone_prints_its_help(capsys: pytest.CaptureFixture[str]) -> None:
    """`relaysim` with no command asks what it can do: the help on stdout, exit 0
    (not a usage error)."""
    main([])
    out, err = capsys.readouterr()
    assert out.startswith("Usage: relaysim [OPTIONS] COMMAND")
    assert "replay" in out
    assert err == ""


STATE_CASES = [
    ("file", "is a file, not a folder"),
    ("file/under", "cannot be made: Not a directory"),
    ("/proc/relaysim", "cannot be made: No such file or directory"),
    ("/sys", "cannot be written: "),  # sysfs: read-only, whoever asks
]


@pytest.mark.parametrize("command", [["serve", SMOKE], ["hsm", "init"], ["hsm", "status"]])
@pytest.mark.parametrize(("state", "why"), STATE_CASES)
def test_an_unusable_state_folder_gets_one_line_naming_it(
    command: list[str],
    state: str,
    why: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A state folder that is a file, lies under one, or sits on /proc or /sys is
    refused before anything starts: exit 2, one line naming the folder and why."""
    (tmp_path / "file").write_text("not a folder")
    folder = state if state.startswith("/") else str(tmp_path / state)
    monkeypatch.setenv("RELAYSIM_STATE", folder)
    with pytest.raises(SystemExit) as exc:
        main(command)
    captured = capsys.readouterr()
    assert exc.value.code == 2, captured.err
    assert captured.err.startswith(f"relaysim: state folder {folder}: {why}")
    assert captured.err.count("\n") == 1
    assert "RELAYSIM_STATE" in captured.err
    assert "Traceback" not in captured.err + captured.out


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Path]:
    """A folder on a read-only file system of its own (a tmpfs; needs root)."""
    folder = tmp_path / "ro"
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode:
        pytest.skip(f"cannot mount a read-only tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_a_state_folder_on_a_read_only_file_system_is_named(
    read_only: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """serve with its state folder on a read-only file system: exit 2 and one line
    saying so, before any port is bound."""
    monkeypatch.setenv("RELAYSIM_STATE", str(read_only))
    with pytest.raises(SystemExit) as exc:
        main(["serve", SMOKE])
    err = capsys.readouterr().err
    assert exc.value.code == 2, err
    assert err.startswith(f"relaysim: state folder {read_only}: cannot be written: Read-only")
    assert err.count("\n") == 1
