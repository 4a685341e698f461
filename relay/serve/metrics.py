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
from relay.core.ledger import OUTCOMES
from relay.core.sketch import merged
from relay.net import REAL, Network
from relay.serve.httpd import Answer, Request, error, serve_http
from relay.serve.ports import listen
from relay.serve.protocol import ErrorCode
from relay.serve.server import RelayServer

#: Latency histogram bounds, seconds: the HSM's milliseconds to the 19 s timer.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Why the server closes a connection (`relaysim_connections_closed_total{reason}`).
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
            "relaysim_overflows", "Connection overflows, by reason", labels=["reason"]
        )
        for reason in ("cs_limit", "node_limit", "no_node"):
            refusals.add_metric([reason], ledger.refusals.get(reason, 0))
        yield refusals
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
            "relaysim_node_hsm_stuck", "Node's HSM lane not answering", labels=["node"]
        )
        outages = CounterMetricFamily(
            "relaysim_node_outages", "Crashes and hangs", labels=["node", "kind"]
        )
        for node, on in zip(tier.nodes, tier.dispatcher.attached, strict=True):
            up.add_metric([node.name], float(node.up))
            attached.add_metric([node.name], float(on))
            conns.add_metric([node.name], node.active)
            stuck.add_metric([node.name], float(node.hsm.stuck))
            for kind in ("crash", "hang"):
                count = sum(1 for o in node.outages if o.kind == kind)
                outages.add_metric([node.name, kind], count)
        yield from (up, attached, conns, stuck, outages)
        yield self._latency()
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
        lane = self.lane
        if lane is not None:
            state = GaugeMetricFamily(
                "relaysim_hsm_lane_state",
                "Real HSM lane: 1 for its current state",
                labels=["state"],
            )
            for each in LaneState:
                state.add_metric([each.value], float(lane.state is each))
            yield state
            yield CounterMetricFamily(
                "relaysim_hsm_lane_restarts", "Real HSM worker replacements", value=lane.restarts
            )

    def _limits(self) -> Iterator[Metric]:
        """The server's limits on clients, and what they refused or closed."""
        server, stats = self.server, self.server.stats
        lim = server.limits
        limits = GaugeMetricFamily(
            "relaysim_serve_limit",
            "Serve mode's limits (the scenario's serve section)",
            labels=["limit"],
        )
        for name, value in (
            ("max_frame_bytes", lim.max_frame),
            ("frame_timeout_seconds", lim.frame_timeout),
            ("idle_timeout_seconds", lim.idle_timeout),
            ("write_timeout_seconds", lim.write_timeout),
            ("max_connections", lim.max_connections),
            ("max_connections_per_peer", lim.per_peer),
            ("reserved_connections", lim.reserved),
            ("drain_seconds", server.drain / lim.scale),
            ("speed", lim.scale),
        ):
            limits.add_metric([name], value)
        yield limits
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
        for muni, held in server.between_by_municipality().items():
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

    def _latency(self) -> HistogramMetricFamily:
        ledger = self.server.tier.ledger
        histogram = ledger.histogram
        if histogram is not None and histogram.bounds == list(BUCKETS):
            counts, total = histogram.cumulative(), histogram.total
        else:  # a replay's ledger (tests): its sketches, to a bin
            whole = merged(ledger.latencies.values())
            counts = [whole.at_most(b) for b in BUCKETS] + [whole.count]
            total = whole.total
        labels = [*(str(b) for b in BUCKETS), "+Inf"]
        return HistogramMetricFamily(
            "relaysim_latency_seconds",
            "Time from arrival to answer of completed requests",
            buckets=list(zip(labels, counts, strict=True)),
            sum_value=total,
        )


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
