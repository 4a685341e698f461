"""The shipped Prometheus set-up (ops/prometheus/) against Debian's own prometheus
and promtool, which `make test` installs: the config and rules check, their unit
tests pass and catch a weakened alert, and a real Prometheus scraping a real
`relaysim serve` on loopback computes the rates and quantiles and fires the hang
alert when a node's HSM lane is stalled.

Prometheus is a real process on the real clock, so its answers are polled under a
deadline of real seconds (`until`), a quarter second apart: it changes them once a
scrape (1 s here), and polling faster would only take the CPU the server needs.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from subprocess import PIPE
from typing import Any

import pytest
import trio
import yaml

from tests.conftest import CONFIGS, ROOT
from tests.test_serve_cli import admin, relaysim, serving

OPS = ROOT / "ops" / "prometheus"
RULES = sorted((OPS / "rules").glob("*.yml"))
UNIT_TESTS = sorted((OPS / "tests").glob("*.yml"))
POLL_S = 0.25


def promtool(*args: str, cwd: Path = OPS) -> subprocess.CompletedProcess[str]:
    """Run promtool; its exit code and output, whatever they are."""
    return subprocess.run(
        ["promtool", *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def test_the_shipped_config_and_rules_pass_promtools_checks_and_unit_tests() -> None:
    """`promtool check config` and `check rules` accept the scrape config and both
    rule files, and `promtool test rules` passes every unit test in ops/prometheus/tests."""
    assert [p.name for p in RULES] == ["relaysim-alerts.yml", "relaysim-recording.yml"]
    assert len(UNIT_TESTS) >= 2
    config = promtool("check", "config", "prometheus.yml")
    assert config.returncode == 0, config.stdout + config.stderr
    rules = promtool("check", "rules", *(str(p) for p in RULES))
    assert rules.returncode == 0, rules.stdout + rules.stderr
    tested = promtool("test", "rules", *(str(p) for p in UNIT_TESTS))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert tested.stdout.count("SUCCESS") == len(UNIT_TESTS)


@pytest.mark.parametrize(
    ("rule_file", "before", "after"),
    [
        ("relaysim-alerts.yml", "        for: 10s\n", "        for: 0s\n"),  # hung at once
        ("relaysim-alerts.yml", "> 0.05", "> 0.07"),  # overflow threshold
        ("relaysim-recording.yml", '{outcome="overflow"}', '{outcome="timeout"}'),  # ratio
        ("relaysim-recording.yml", '{result="answered"}', '{result="failed"}'),  # token p99
    ],
)
def test_the_unit_tests_catch_a_changed_rule(
    rule_file: str, before: str, after: str, tmp_path: Path
) -> None:
    """A copy of ops/prometheus with one rule changed (the hang alert's wait, the
    overflow threshold, the overflow ratio's outcome, the token p99's calls) fails
    `promtool test rules`."""
    copy = tmp_path / "prometheus"
    shutil.copytree(OPS, copy)
    path = copy / "rules" / rule_file
    text = path.read_text(encoding="utf-8")
    assert text.count(before) == 1
    path.write_text(text.replace(before, after), encoding="utf-8")
    tested = promtool("test", "rules", *(p.name for p in UNIT_TESTS), cwd=copy / "tests")
    assert tested.returncode != 0
    assert "FAILED" in tested.stdout + tested.stderr


def scrape_config(metrics_port: int) -> dict[str, Any]:
    """The shipped prometheus.yml, scraping serve's metrics on `metrics_port` and
    evaluating the shipped rules (absolute paths) every second."""
    config: dict[str, Any] = yaml.safe_load((OPS / "prometheus.yml").read_text(encoding="utf-8"))
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["rule_files"] = [str(OPS / name) for name in config["rule_files"]]
    [job] = config["scrape_configs"]
    job["static_configs"] = [{"targets": [f"127.0.0.1:{metrics_port}"]}]
    return config


@asynccontextmanager
async def prometheus(folder: Path, metrics_port: int) -> AsyncIterator[int]:
    """Debian's prometheus on 127.0.0.1 (a free port, which it names in its log),
    storing in `folder`, scraping `metrics_port`; its port, once it is ready. Killed
    on leaving."""
    config = folder / "prometheus.yml"
    config.write_text(yaml.safe_dump(scrape_config(metrics_port)), encoding="utf-8")
    cmd = [
        "prometheus",
        f"--config.file={config}",
        f"--storage.tsdb.path={folder / 'data'}",
        "--web.listen-address=127.0.0.1:0",
    ]
    proc = await trio.lowlevel.open_process(cmd, stdout=subprocess.DEVNULL, stderr=PIPE)
    assert proc.stderr is not None
    log: list[str] = []
    ready = trio.Event()
    port: list[int] = []

    async def read_log() -> None:
        # Read to the end, so that its log never fills the pipe and stalls it.
        assert proc.stderr is not None
        text = b""
        while chunk := await proc.stderr.receive_some(65536):
            text += chunk
            *lines, rest = text.split(b"\n")
            text = rest
            for line in (ln.decode(errors="replace") for ln in lines):
                log.append(line)
                found = re.search(r'msg="Listening on" address=127\.0\.0\.1:(\d+)', line)
                if found:
                    port.append(int(found[1]))
                if "Server is ready to receive web requests" in line:
                    ready.set()

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_log)
            with trio.move_on_after(30):
                await ready.wait()
            assert ready.is_set(), "prometheus did not start:\n" + "\n".join(log)
            assert port, "prometheus named no port:\n" + "\n".join(log)
            try:
                yield port[0]
            finally:
                nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            if proc.returncode is None:
                proc.kill()
            with trio.fail_after(30):
                await proc.wait()
            await proc.stderr.aclose()


async def api(port: int, path: str, **params: str) -> Any:
    """GET Prometheus' HTTP API `path` with `params`; its `data`."""
    url = f"http://127.0.0.1:{port}{path}?{urllib.parse.urlencode(params)}"

    def get() -> Any:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return json.load(answer)

    doc = await trio.to_thread.run_sync(get)
    assert doc["status"] == "success", doc
    return doc["data"]


async def until(
    port: int, query: str, holds: Callable[[float], bool], within: float = 30.0
) -> float:
    """Poll the instant query `query` until it has one series whose value `holds`,
    for at most `within` real seconds; the value (printed, with the query)."""
    result: list[Any] = []
    with trio.move_on_after(within):
        while True:
            result = (await api(port, "/api/v1/query", query=query))["result"]
            if len(result) == 1 and holds(float(result[0]["value"][1])):
                value = float(result[0]["value"][1])
                print(f"PromQL {query}  =>  {value:g}")
                return value
            await trio.sleep(POLL_S)  # until the next evaluation, not a guess at the answer
    pytest.fail(f"{query}: {result} after {within:g} s")


async def test_a_real_prometheus_scrapes_serve_and_fires_the_hang_alert(tmp_path: Path) -> None:
    """Prometheus scraping `relaysim serve --speed 60` (legacy, no operators) under
    `relaysim load` evaluates the shipped rules: the request rate is positive, the
    completed requests' p99 a finite number of real seconds, the recorded rate
    positive; once `relaysim fault` stalls relay1's HSM lane, RelaysimNodeHung fires
    for relay1 alone (and for no node before), relay1's lane state is stuck and its
    requests time out."""
    legacy = [
        *("--speed", "60", "--design", "legacy"),
        *("--set", "recovery.operators=false", "--set", "monitor.enabled=false"),
    ]
    loaded: list[tuple[int, str, str]] = []
    async with serving(*legacy) as (_, port, metrics, _), prometheus(tmp_path, metrics) as prom:
        with trio.fail_after(120):
            await until(prom, 'up{job="relaysim"}', lambda v: v == 1)
            async with trio.open_nursery() as nursery:

                async def load() -> None:
                    loaded.append(await relaysim(
                        *("load", str(CONFIGS / "smoke.yaml"), "--target", f"127.0.0.1:{port}"),
                        *("--rate", "100", "--duration", "20", "--quiet"),
                    ))  # fmt: skip

                nursery.start_soon(load)
                seen = await stall_and_watch(prom)
    hung = [a for a in seen["alerts"] if a["labels"]["alertname"] == "RelaysimNodeHung"]
    print("GET /api/v1/alerts  =>", json.dumps(hung))
    assert [(a["labels"]["node"], a["state"]) for a in hung] == [("relay1", "firing")]
    assert seen["hung before"] == []
    # The alert's `for: 10s`, less the few ms a scrape's timestamp may precede its read.
    assert seen["fired after"] > 9.9
    assert seen["rate"] < 200  # about 100 a second, as sent
    assert 0 < seen["p99"] < 1.0  # real seconds: at 60x a second is a minute of the scenario
    assert seen["recorded"] > 0
    assert seen["timeouts"] > 0  # requests placed on the hung node wait for their timer
    [(code, _, err)] = loaded
    assert code == 0, err


async def stall_and_watch(prom: int) -> dict[str, Any]:
    """Under load: the rate and p99 Prometheus computes, then relay1's HSM lane
    stalled with `relaysim fault` and Prometheus watched until the hang alert fires."""
    seen: dict[str, Any] = {}
    # The load sends 100 a second: once a whole window of it is in, about that.
    seen["rate"] = await until(prom, "rate(relaysim_requests_total[5s])", lambda v: v > 80)
    seen["p99"] = await until(
        prom,
        "histogram_quantile(0.99, sum by (le) ("
        'rate(relaysim_request_duration_seconds_bucket{outcome="completed"}[10s])))',
        math.isfinite,
    )
    seen["recorded"] = await until(prom, "instance:relaysim_requests:rate1m", lambda v: v > 0)
    seen["hung before"] = [
        a
        for a in (await api(prom, "/api/v1/alerts"))["alerts"]
        if a["labels"]["alertname"] == "RelaysimNodeHung"
    ]
    where = f"127.0.0.1:{admin['port']}"
    stalled = trio.current_time()  # no later than the stall
    code, _, err = await relaysim(
        "fault", "--admin", where, "inject", "hsm_stall", "--node", "1", state=admin["state"]
    )
    assert code == 0, err
    firing = 'ALERTS{alertname="RelaysimNodeHung",alertstate="firing"}'
    await until(prom, firing, lambda v: v == 1)
    seen["fired after"] = trio.current_time() - stalled
    print(f"RelaysimNodeHung fired {seen['fired after']:.1f} s after relaysim fault started")
    seen["alerts"] = (await api(prom, "/api/v1/alerts"))["alerts"]
    stuck = 'relaysim_hsm_lane_state{node="relay1",state="stuck"}'
    seen["stuck"] = await until(prom, stuck, lambda v: v == 1)
    seen["timeouts"] = await until(
        prom,
        'increase(relaysim_node_outcomes_total{node="relay1",outcome="timeout"}[30s])',
        lambda v: v > 0,
    )
    return seen
