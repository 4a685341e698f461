"""Thresholds a run must meet, as CI suites write them: `overflow_rate < 0.1%`.

    expectation := figure operator number
    figure      := name ("." name)*          a summary figure: crashes, latency_ms.p99
    operator    := "<" | "<=" | ">" | ">=" | "==" | "!="
    number      := a decimal number, optionally with a "%" (0.1% is 0.001)

Parsed by a regular expression, never evaluated as code. The figures are the run's
summary document's numbers (`relaysim.summary/3`: `requests`, `lost`, `crashes`,
`latency_ms.p99`, `client.late_sends`, ...), a hunt's (`examples`, `crashes`,
`hangs`, `invariants`, `windows_missed`), and rates derived from the counts:
`overflow_rate`, `relay_overflow_rate`, `timeout_rate`, `error_rate`. A figure the
run does not have (no latency when nothing completed) fails its threshold.

Each figure knows which kinds of run measure it (`KINDS`, `Expectation.kinds`): a
replay's summary (a sweep point's too), a load's (a replay's figures and the
client's own), a hunt's result. A threshold no run of a command can measure is
refused before anything runs (`for_kind`), and one given for several kinds of run
(a suite's) is held only by the runs that measure it (`Expectation.applies`).
"""

from __future__ import annotations

import difflib
import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    ">": operator.gt,
}
_EXPR = re.compile(
    r"^\s*(?P<figure>[a-z_][a-z0-9_]*(?:\.[a-z0-9_]+)*)\s*"
    r"(?P<op><=|>=|==|!=|<|>)\s*"
    r"(?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(?P<percent>%?)\s*$"
)

#: Figures of a replay's or a load's summary, and those derived from its counts.
SUMMARY_FIGURES = (
    "requests", "completed", "overflows", "timeouts", "errors", "lost",
    "relay_overflows", "crashes", "hangs", "outage_minutes", "chip_operations",
    "inconsistent", "duplicates_applied", "deduplicated", "sim_seconds", "wall_seconds",
    "latency_ms.p50", "latency_ms.p90", "latency_ms.p95", "latency_ms.p99", "latency_ms.max",
    "latency_ms.mean",
    "backend.calls", "backend.waits", "backend.mean_wait_ms",
    "client.late_sends", "client.latest_send_ms",
    "overflow_rate", "relay_overflow_rate", "timeout_rate", "error_rate", "violations",
)  # fmt: skip
#: Figures of a hunt's result.
HUNT_FIGURES = ("examples", "shrink_runs", "crashes", "hangs", "invariants", "windows_missed")
FIGURES = tuple(dict.fromkeys(SUMMARY_FIGURES + HUNT_FIGURES))
#: The kinds of run, each with the figures it measures: a load's summary is a
#: replay's plus what the client saw of its own schedule.
CLIENT_FIGURES = ("client.late_sends", "client.latest_send_ms")
KINDS: dict[str, frozenset[str]] = {
    "replay": frozenset(SUMMARY_FIGURES) - frozenset(CLIENT_FIGURES),
    "load": frozenset(SUMMARY_FIGURES),
    "hunt": frozenset(HUNT_FIGURES),
}


class ExpectError(ValueError):
    """An expectation that does not parse; the message is one line naming it."""


@dataclass(frozen=True)
class Expectation:
    """One threshold: `figure` `op` `value`, as written (`text`)."""

    text: str
    figure: str
    op: str
    value: float

    @property
    def kinds(self) -> frozenset[str]:
        """The kinds of run that measure this threshold's figure."""
        return frozenset(k for k, measured in KINDS.items() if self.figure in measured)

    def applies(self, kind: str) -> bool:
        """Whether a run of `kind` measures this threshold's figure."""
        return self.figure in KINDS[kind]

    def holds(self, measured: float | None) -> bool:
        """Whether `measured` meets the threshold (a missing figure never does)."""
        if measured is None or math.isnan(measured):
            return False
        return OPERATORS[self.op](measured, self.value)


@dataclass(frozen=True)
class Verdict:
    """An expectation and what the run measured."""

    expectation: Expectation
    measured: float | None
    passed: bool

    def line(self) -> str:
        """`PASS overflow_rate < 0.1% (measured 0.00059)`."""
        got = "none" if self.measured is None else f"{self.measured:.6g}"
        return f"{'PASS' if self.passed else 'FAIL'} {self.expectation.text} (measured {got})"

    def document(self) -> dict[str, Any]:
        """The verdict as JSON."""
        return {
            "expect": self.expectation.text,
            "measured": self.measured,
            "passed": self.passed,
        }


def parse(text: str) -> Expectation:
    """An expectation from its text, or ExpectError naming what is wrong."""
    m = _EXPR.match(text)
    if m is None:
        raise ExpectError(
            f"{text!r}: expected FIGURE OP NUMBER, for example 'overflow_rate < 0.001' or "
            "'latency_ms.p99 <= 10000' (OP: < <= > >= == !=)"
        )
    figure = m["figure"]
    if figure not in FIGURES:
        close = difflib.get_close_matches(figure, FIGURES, n=1)
        hint = f"; did you mean {close[0]}?" if close else f"; one of {', '.join(FIGURES)}"
        raise ExpectError(f"{text!r}: unknown figure {figure!r}{hint}")
    value = float(m["number"]) / (100.0 if m["percent"] else 1.0)
    return Expectation(" ".join(text.split()), figure, m["op"], value)


def check_all(
    texts: Sequence[str], where: str = "", kinds: set[str] | frozenset[str] = frozenset(KINDS)
) -> None:
    """A validator's check of a list of expectations: ValueError naming the first
    that does not parse, or that no run of `kinds` can measure, by its index
    (`where` before it: "expect.")."""
    for i, text in enumerate(texts):
        try:
            for_kind(text, kinds)
        except ExpectError as exc:
            raise ValueError(f"{where}{i}: {exc}") from None


def measured_by(texts: Sequence[str], kind: str) -> list[Expectation]:
    """The expectations of `texts` (already checked) that a run of `kind` measures;
    the others are another kind's (a scenario's list serves its replays and loads,
    a suite's every case)."""
    return [e for e in map(parse, texts) if e.applies(kind)]


def for_kind(text: str, kinds: set[str] | frozenset[str]) -> Expectation:
    """The expectation of `text` if a run of one of `kinds` measures its figure;
    else ExpectError saying which kinds do."""
    e = parse(text)
    if not e.kinds & kinds:
        measured = " and ".join(sorted(e.kinds))
        asked = " or ".join(sorted(kinds))
        raise ExpectError(
            f"{e.text!r}: {e.figure} is measured by {measured} runs, not by {asked} runs"
        )
    return e


def figures(doc: Mapping[str, Any]) -> dict[str, float | None]:
    """Every figure of a result document (a summary or a hunt's), by name."""
    if doc.get("schema") == "relaysim.hunt/1":
        failure = doc.get("failure") or {}
        kind = failure.get("kind")
        return {
            "examples": doc.get("examples"),
            "shrink_runs": doc.get("shrink_runs", 0),
            "crashes": float(kind == "crash"),
            "hangs": float(kind == "hang"),
            "invariants": float(kind == "invariant"),
            "windows_missed": float(len(doc.get("windows_missed") or [])),
        }
    out: dict[str, float | None] = {}
    for name in SUMMARY_FIGURES:
        node: Any = doc
        for part in name.split("."):
            node = node.get(part) if isinstance(node, Mapping) else None
        if isinstance(node, bool | int | float):
            out[name] = float(node)
        elif name == "violations":
            out[name] = float(len(doc.get("violations") or []))
        else:
            out[name] = None
    requests = out["requests"] or 0.0
    for rate, count in (
        ("overflow_rate", "overflows"),
        ("relay_overflow_rate", "relay_overflows"),
        ("timeout_rate", "timeouts"),
        ("error_rate", "errors"),
    ):
        n = out.get(count)
        out[rate] = None if n is None else (n / requests if requests else 0.0)
    return out


def judge(expectations: list[Expectation], doc: Mapping[str, Any]) -> list[Verdict]:
    """Each expectation against the run's document."""
    measured = figures(doc)
    return [
        Verdict(e, measured.get(e.figure), e.holds(measured.get(e.figure))) for e in expectations
    ]
