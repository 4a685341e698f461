"""Prometheus metrics of a serving relay tier, and the `/metrics` endpoint.

Nothing is counted twice: a custom collector reads the model's own records (the
ledger, the dispatcher, the nodes, the server's stats, the HSM lane) at scrape
time, so the request path pays nothing for metrics and the figures always agree
with the summary a replay would print. The text format is prometheus_client's;
the HTTP is `relay.serve.httpd`'s.
"""

from __future__ import annotations

from collections.abc import Iterator

import trio
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from hsm_adapter.lane import LaneState, Pkcs11Hsm
from relay.core.hsm import HsmQueue
from relay.core.ledger import OUTCOMES, LatencyHistogram, Ledger, Tally
from relay.core.request import Outcome
from relay.core.sketch import merged
from relay.net import REAL, Network
from relay.serve.httpd import Answer, Request, error, serve_http
from relay.serve.ports import listen
from relay.serve.protocol import ErrorCode
from relay.serve.server import RelayServer

#: Request duration histogram bounds, real seconds: the HSM's milliseconds to the
#: relay's 19 s timer, as a server at real time sees them.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0)


def serving_ledger(speed: float = 1.0) -> Ledger:
    """A serving tier's ledger: each outcome's durations counted into BUCKETS of
    real seconds (BUCKETS x `speed` of the model's), no sample kept."""
    return Ledger(latency_bounds=[b * speed for b in BUCKETS])


CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Why the server closes a connection (`relaysim_connections_closed_total{reason}`).
#: Every reason a request overflows (`relaysim_overflows_total{reason}`): at the CS's
#: terminals, then at the relays.
REASONS = ("terminal_limit", "cs_limit", "node_limit", "no_node")
CLOSES = (ErrorCode.TOO_SLOW, ErrorCode.NOT_READING, ErrorCode.IDLE, ErrorCode.SHUTTING_DOWN)


class TierCollector(Collector):
    """Metric families of one server's tier, computed when scraped."""

    def __init__(self, server: RelayServer, lane: Pkcs11Hsm | None = None) -> None:
        self.server = server
        self.lane = lane  # when serving a real token

    def collect(self) -> Iterator[Metric]:
        """Every family, from the model's records as they are now."""
        tier, stats = self.server.tier, self.server.stats
        ledger = tier.ledger
        yield CounterMetricFamily(
            "relaysim_requests", "Requests received", value=ledger.total.requests
        )
        outcomes = CounterMetricFamily(
            "relaysim_outcomes", "Requests ended, by outcome", labels=["outcome"]
        )
        for outcome in OUTCOMES:
            outcomes.add_metric([outcome.value], ledger.total.count(outcome))
        yield outcomes
        refusals = CounterMetricFamily(
            "relaysim_overflows",
            "Overflows by reason: at the CS (terminal_limit) or at the relays; they add "
            "up to the overflow outcomes",
            labels=["reason"],
        )
        for reason in REASONS:
            refusals.add_metric([reason], ledger.refusals.get(reason, 0))
        yield refusals
        yield from self._per_node()
        yield GaugeMetricFamily(
            "relaysim_scenario_clock_seconds",
            "The scenario's time: seconds since the midnight of its first day (serve "
            "starts at the day's opening and runs --speed of them a real second), the "
            "scenario_time of serve's log",
            value=self.server.clock.seconds(trio.current_time()),
        )
        yield GaugeMetricFamily(
            "relaysim_speed",
            "Scenario seconds per real second (serve --speed)",
            value=self.server.limits.scale,
        )
        yield GaugeMetricFamily(
            "relaysim_in_flight", "Requests without an outcome yet", value=len(ledger.still_open)
        )
        up = GaugeMetricFamily("relaysim_node_up", "Relay application running", labels=["node"])
        attached = GaugeMetricFamily(
            "relaysim_node_attached", "Node attached to the distributor", labels=["node"]
        )
        conns = GaugeMetricFamily(
            "relaysim_node_connections", "CS connections open on the node", labels=["node"]
        )
        stuck = GaugeMetricFamily(
            "relaysim_node_hsm_stuck",
            'Node\'s HSM lane not answering: relaysim_hsm_lane_state{state="stuck"}',
            labels=["node"],
        )
        outages = CounterMetricFamily(
            "relaysim_node_outages", "Crashes and hangs", labels=["node", "kind"]
        )
        for node, on in zip(tier.nodes, tier.dispatcher.attached, strict=True):
            up.add_metric([node.name], float(node.up))
            attached.add_metric([node.name], float(on))
            conns.add_metric([node.name], node.active)
            stuck.add_metric([node.name], float(lane_state(node.hsm, self.lane) is LaneState.STUCK))
            for kind in ("crash", "hang"):
                count = sum(1 for o in node.outages if o.kind == kind)
                outages.add_metric([node.name, kind], count)
        yield from (up, attached, conns, stuck, outages)
        yield from self._durations()
        yield GaugeMetricFamily(
            "relaysim_connections_open", "Client connections open", value=stats.open
        )
        rejected = CounterMetricFamily(
            "relaysim_rejected_input",
            "Frames and connections refused, by the error code sent",
            labels=["code"],
        )
        for code in ErrorCode:  # every code, from 0: a rate needs a first sample
            rejected.add_metric([code.name], stats.rejected[code.name])
        yield rejected
        yield from self._limits()
        yield from self._hsm()

    def _hsm(self) -> Iterator[Metric]:
        """Each node's HSM lane as the node sees it; with a real token, its worker's
        replacements and its calls' durations."""
        lane = self.lane
        state = GaugeMetricFamily(
            "relaysim_hsm_lane_state",
            "Each node's HSM lane, 1 for the state it is in as the node sees it: stuck "
            "while the node's lane stalls (an injected hsm_stall, cause 1), else the "
            "token worker's state (one worker for every node, serve --hsm softhsm), or "
            "ready (the simulated HSM)",
            labels=["node", "state"],
        )
        for node in self.server.tier.nodes:
            now = lane_state(node.hsm, lane)
            for each in LaneState:
                state.add_metric([node.name, each.value], float(each is now))
        yield state
        if lane is None:
            return
        yield CounterMetricFamily(
            "relaysim_hsm_lane_restarts", "Token worker replacements", value=lane.restarts
        )
        calls = HistogramMetricFamily(
            "relaysim_hsm_token_call_duration_seconds",
            "Token calls' time from submission to the token's answer (answered) or to "
            "the lane failing them, stuck past the deadline or lost with the worker "
            "(failed); real seconds (--hsm softhsm runs at --speed 1)",
            labels=["result"],
        )
        for result, histogram in (("answered", lane.answered), ("failed", lane.failed)):
            calls.add_metric([result], buckets=_buckets(histogram), sum_value=histogram.total)
        yield calls

    def _limits(self) -> Iterator[Metric]:
        """The server's limits on clients, and what they refused or closed."""
        server, stats = self.server, self.server.stats
        lim = server.limits
        # One unit per metric: bytes, real seconds, connections.
        for unit, help_text, rows in (
            ("bytes", "Serve mode's size limits", (("max_frame", lim.max_frame),)),
            ("seconds", "Serve mode's time limits, real seconds", (
                ("frame_timeout", lim.frame_timeout),
                ("idle_timeout", lim.idle_timeout),
                ("write_timeout", lim.write_timeout),
                ("drain", server.drain / lim.scale),
            )),
            ("connections", "Serve mode's connection limits", (
                ("max_connections", lim.max_connections),
                ("max_connections_per_peer", lim.per_peer),
                ("reserved_connections", lim.reserved),
            )),
        ):  # fmt: skip
            family = GaugeMetricFamily(f"relaysim_serve_limit_{unit}", help_text, labels=["limit"])
            for name, value in rows:
                family.add_metric([name], value)
            yield family
        refused = CounterMetricFamily(
            "relaysim_connections_refused",
            "New connections refused, by the limit that refused them",
            labels=["limit"],
        )
        for limit in ("max_connections", "per_peer", "reserved", "stopping"):
            refused.add_metric([limit], stats.refused_connections[limit])
        yield refused
        evicted = CounterMetricFamily(
            "relaysim_connections_evicted",
            "Idle connections closed to admit a new one at a connection limit, by limit",
            labels=["limit"],
        )
        for limit in ("max_connections", "per_peer", "reserved"):
            evicted.add_metric([limit], stats.evicted[limit])
        yield evicted
        closed = CounterMetricFamily(
            "relaysim_connections_closed",
            "Connections the server closed, by why",
            labels=["reason"],
        )
        for code in CLOSES:
            closed.add_metric([code.name], stats.closed[code.name])
        yield closed
        yield GaugeMetricFamily(
            "relaysim_peers", "Client addresses with a connection open", value=server.peers
        )
        yield GaugeMetricFamily(
            "relaysim_operations_between_messages",
            "Counter operations holding their connection for the client's next message",
            value=server.between_messages,
        )
        by_muni = GaugeMetricFamily(
            "relaysim_municipality_operations_between_messages",
            "Operations between messages, by municipality (those with any)",
            labels=["municipality"],
        )
        for muni, held in server.operations.between_by_municipality().items():
            by_muni.add_metric([str(muni)], held)
        yield by_muni
        yield GaugeMetricFamily(
            "relaysim_cs_connections_held",
            "CS connections held open on the relays: requests running and operations "
            "between messages (the CS caps' slots in use)",
            value=server.connections_held,
        )
        yield CounterMetricFamily(
            "relaysim_operations_abandoned",
            "Operations whose next message never came (idle timeout, or a stop)",
            value=stats.abandoned,
        )

    def _per_node(self) -> Iterator[Metric]:
        """Requests, outcomes, the node's overflows and durations by node (those
        placed on it, or refused by it)."""
        tier, speed = self.server.tier, self.server.limits.scale
        ledger = tier.ledger
        requests = CounterMetricFamily(
            "relaysim_node_requests",
            "Requests placed on (or refused by) the node",
            labels=["node"],
        )
        outcomes = CounterMetricFamily(
            "relaysim_node_outcomes",
            "Requests ended on the node, by outcome",
            labels=["node", "outcome"],
        )
        overflows = CounterMetricFamily(
            "relaysim_node_overflows",
            "Overflows the node refused, by reason: node_limit, at its connection limit "
            "(the CS's caps and terminals refuse before any node, no_node with none "
            "attached: relaysim_overflows_total has every reason)",
            labels=["node", "reason"],
        )
        durations = HistogramMetricFamily(
            "relaysim_node_request_duration_seconds",
            "Time from a request's arrival to its outcome on each node, real seconds, by outcome",
            labels=["node", "outcome"],
        )
        labels = [*(f"{b:g}" for b in BUCKETS), "+Inf"]
        none = LatencyHistogram([b * speed for b in BUCKETS])  # a node without any yet
        for node in tier.nodes:
            tally = ledger.nodes.get(node.number) or Tally()
            requests.add_metric([node.name], tally.requests)
            for outcome in OUTCOMES:
                outcomes.add_metric([node.name, outcome.value], tally.count(outcome))
            refused = ledger.node_refusals.get(node.number, {})
            for reason in sorted({"node_limit", *refused}):  # node_limit from 0
                overflows.add_metric([node.name, reason], refused.get(reason, 0))
            on_node = (ledger.node_durations or {}).get(node.number, {})
            for outcome in OUTCOMES:
                histogram = on_node.get(outcome, none)
                durations.add_metric(
                    [node.name, outcome.value],
                    buckets=list(zip(labels, histogram.cumulative(), strict=True)),
                    sum_value=histogram.total / speed,
                )
        yield from (requests, outcomes, overflows, durations)

    def _durations(self) -> Iterator[Metric]:
        """Each outcome's time from arrival: in real seconds (what a client waited),
        and the same counts in the model's seconds under a name that says so."""
        ledger, speed = self.server.tier.ledger, self.server.limits.scale
        real = HistogramMetricFamily(
            "relaysim_request_duration_seconds",
            "Time from a request's arrival to its outcome, real seconds, by outcome",
            labels=["outcome"],
        )
        model = HistogramMetricFamily(
            "relaysim_request_scenario_duration_seconds",
            "The same durations in scenario seconds (real seconds x serve --speed)",
            labels=["outcome"],
        )
        for outcome in OUTCOMES:
            counts, total = self._counts(ledger, outcome, speed)
            for family, scale in ((real, 1.0), (model, speed)):
                labels = [*(f"{b * scale:g}" for b in BUCKETS), "+Inf"]
                family.add_metric(
                    [outcome.value],
                    buckets=list(zip(labels, counts, strict=True)),
                    sum_value=total * scale,
                )
        yield from (real, model)

    @staticmethod
    def _counts(ledger: Ledger, outcome: Outcome, speed: float) -> tuple[list[int], float]:
        """Cumulative counts at BUCKETS (real seconds) and the sum in real seconds."""
        by = ledger.by_outcome
        if by is not None and by[outcome].bounds == sorted(b * speed for b in BUCKETS):
            histogram = by[outcome]
            return histogram.cumulative(), histogram.total / speed
        if outcome is not Outcome.COMPLETED:  # a replay's ledger (tests) keeps no other
            return [0] * (len(BUCKETS) + 1), 0.0
        whole = merged(ledger.latencies.values())  # its sketches, to a bin
        return [whole.at_most(b * speed) for b in BUCKETS] + [whole.count], whole.total / speed


def lane_state(hsm: HsmQueue, lane: Pkcs11Hsm | None) -> LaneState:
    """The state of a node's HSM lane as the node sees it: stuck while its own lane
    stalls (the model's flag: it never reaches the token), else the real token
    worker's state, or ready on the simulated HSM."""
    if hsm.stuck:
        return LaneState.STUCK
    return LaneState.READY if lane is None else lane.state


def _buckets(histogram: LatencyHistogram) -> list[tuple[str, float]]:
    """A histogram's cumulative counts under Prometheus' `le` labels."""
    labels = [*(f"{b:g}" for b in histogram.bounds), "+Inf"]
    return list(zip(labels, histogram.cumulative(), strict=True))


def registry_for(server: RelayServer, lane: Pkcs11Hsm | None = None) -> CollectorRegistry:
    """A registry holding only this server's collector."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(TierCollector(server, lane))
    return registry


async def serve_metrics(
    registry: CollectorRegistry,
    port: int = 0,
    *,
    scale: float = 1.0,
    network: Network = REAL,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """HTTP on 127.0.0.1:`port` of `network`: `GET /metrics` answers the registry's
    text; else 404. `scale`: trio seconds per real second (`serve --speed`)."""

    async def handler(request: Request) -> Answer:
        if request.method == "GET" and request.path == "/metrics":
            return Answer(200, CONTENT_TYPE, generate_latest(registry))
        return error(404, f"not found: {request.method} {request.path}: try GET /metrics")

    listener, bound = await listen(port, "metrics port", network)
    task_status.started(bound)
    await serve_http(handler, listener, request_timeout=5.0 * scale)
