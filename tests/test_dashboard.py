"""ops/grafana/relaysim.json and the Prometheus rules name only what serve exports:
every metric in every query of the dashboard (panels, variables, annotations) and
of the rule files is a sample name of a served tier's /metrics (or a recording
rule's), and every dashboard query parses as PromQL (promtool)."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from relay.scenario.schema import load_scenario
from relay.serve import simnet
from relay.serve.metrics import registry_for
from tests.conftest import CONFIGS, ROOT
from tests.test_metrics import token_worker

DASHBOARD = ROOT / "ops" / "grafana" / "relaysim.json"
RULES = sorted((ROOT / "ops" / "prometheus" / "rules").glob("*.yml"))
#: Each family's sample names as the text format writes them.
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
#: What Grafana puts into a query before Prometheus sees it.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__range": "1h", "$instance": ".*", "$node": ".*"}


@cache
def exported() -> frozenset[str]:
    """The sample names of a served tier's /metrics, scraped mid-run on the simulated
    network with a token worker (so the real HSM's too); a family without samples
    yet counts with its type's names."""
    names: set[str] = set()

    def scrape(here: simnet.Situation) -> None:
        text = generate_latest(registry_for(here.server, token_worker())).decode()
        for family in text_string_to_metric_families(text):
            names.update(s.name for s in family.samples)
            names.update(family.name + suffix for suffix in SUFFIXES[family.type])

    simnet.run(load_scenario(CONFIGS / "smoke.yaml"), duration=5.0, rate=20.0,
               actions=[(4.0, scrape)])  # fmt: skip
    return frozenset(names)


def recorded() -> set[str]:
    """The names the shipped recording rules record."""
    return {rule["record"] for rule in rules() if "record" in rule}


def rules() -> Iterator[dict[str, Any]]:
    """Every rule of the shipped rule files."""
    for path in RULES:
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            yield from group["rules"]


def queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, PromQL) for every query of `dashboard`: each panel's targets, the
    variables' queries and the annotations'."""
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield f"panel {panel['title']!r}", target["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            yield f"variable {variable['name']}", variable["query"]["query"]
    for annotation in dashboard["annotations"]["list"]:
        if "expr" in annotation:
            yield f"annotation {annotation['name']!r}", annotation["expr"]


def metric_names(promql: str) -> set[str]:
    """The metric names `promql` reads: relaysim's, and recording rules' (level:name:op)."""
    bare = re.sub(r'"(?:[^"\\]|\\.)*"', '""', promql)  # label values are not names
    words = re.findall(r"(?<![\w:$])[A-Za-z_:][\w:]*", bare)
    return {w for w in words if w.startswith("relaysim_") or ":" in w}


def unknown(found: Iterator[tuple[str, str]]) -> dict[str, set[str]]:
    """Where each query names a metric that serve does not export and no rule records."""
    known = exported() | recorded()
    out = {}
    for where, promql in found:
        missing = metric_names(promql) - known
        if missing:
            out[where] = missing
    return out


def load_dashboard() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return doc


def test_every_dashboard_query_names_metrics_serve_exports() -> None:
    """Every metric in every panel, variable and annotation query is exported by
    serve; every panel reads the dashboard's Prometheus variable; and the panels
    cover the series an SRE needs."""
    dashboard = load_dashboard()
    assert unknown(queries(dashboard)) == {}
    [source] = [v for v in dashboard["templating"]["list"] if v["type"] == "datasource"]
    assert source["query"] == "prometheus"
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert all(p["targets"] for p in panels)
    assert all(p["datasource"]["uid"] == "${" + source["name"] + "}" for p in panels)
    assert all(t["datasource"]["uid"] == "${datasource}" for p in panels for t in p["targets"])
    named = set().union(*(metric_names(q) for _, q in queries(dashboard)))
    for needed in (
        "relaysim_requests_total",
        "relaysim_outcomes_total",
        "relaysim_overflows_total",
        "relaysim_request_duration_seconds_bucket",
        "relaysim_node_requests_total",
        "relaysim_node_outcomes_total",
        "relaysim_node_overflows_total",
        "relaysim_node_request_duration_seconds_bucket",
        "relaysim_scenario_clock_seconds",
        "relaysim_hsm_lane_state",
        "relaysim_hsm_token_call_duration_seconds_bucket",
        "relaysim_in_flight",
    ):
        assert needed in named


def test_a_misspelt_metric_in_a_panel_is_caught() -> None:
    """The same check on the dashboard with one panel's metric misspelt names that
    panel and the misspelling."""
    dashboard = load_dashboard()
    panel = next(p for p in dashboard["panels"] if p["title"] == "Request rate")
    panel["targets"][0]["expr"] = panel["targets"][0]["expr"].replace(
        "relaysim_requests_total", "relaysim_request_total"
    )
    assert unknown(queries(dashboard)) == {"panel 'Request rate'": {"relaysim_request_total"}}


def test_every_rule_names_metrics_serve_exports() -> None:
    """Every metric the shipped recording and alerting rules read is exported by
    serve or recorded by a shipped rule."""
    found = [(rule.get("record") or rule["alert"], rule["expr"]) for rule in rules()]
    assert len(found) >= 10
    assert unknown(iter(found)) == {}


def test_every_dashboard_query_parses_as_promql(tmp_path: Path) -> None:
    """Each query, with Grafana's variables given values, is a recording rule
    `promtool check rules` accepts."""
    exprs = []
    for _, promql in queries(load_dashboard()):
        for variable, value in GRAFANA_VARIABLES.items():
            promql = promql.replace(variable, value)
        if not promql.startswith("label_values("):  # Grafana's, not PromQL
            exprs.append(promql)
    rule_file = tmp_path / "dashboard.yml"
    group = {"name": "dashboard", "rules": [
        {"record": f"dashboard:query{i}", "expr": e} for i, e in enumerate(exprs)]}  # fmt: skip
    rule_file.write_text(yaml.safe_dump({"groups": [group]}), encoding="utf-8")
    checked = subprocess.run(
        ["promtool", "check", "rules", str(rule_file)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in checked.stdout


@pytest.mark.parametrize(
    ("promql", "names"),
    [
        ('sum by (node) (rate(relaysim_node_requests_total{node=~"relaysim_x"}[1m]))',
         {"relaysim_node_requests_total"}),
        ("instance:relaysim_requests:rate1m > 0", {"instance:relaysim_requests:rate1m"}),
        ("histogram_quantile(0.99, sum by (le) (rate(x_bucket[$__rate_interval])))", set()),
    ],
)  # fmt: skip
def test_metric_names_reads_names_not_labels_functions_or_values(
    promql: str, names: set[str]
) -> None:
    """Names are read from a query; label names and values, functions and Grafana's
    variables are not names."""
    assert metric_names(promql) == names
