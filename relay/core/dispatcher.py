"""The traffic distributor: spreads CS connections over the attached relay nodes.

It also keeps each CS within its simultaneous-connection cap towards the relay tier.
A connection it cannot place is refused with a reason, and counted as a
connection-overflow event (the 12,650 of 29 March 2016 are these):

- `cs_limit`: the CS already has as many connections open to the relay tier as
  its cap allows (the CS-to-relay limit, enforced at the relays);
- `node_limit`: the node the policy picked is at its connection limit;
- `no_node`: no node is attached at all.

A connection passes two limits on its way (incident-2016.md names both, raised
together for large municipalities): the terminal-to-CS limit first, at the CS
(`terminal_limit`: refused before it reaches the relay tier, so not one of the
relays' overflow events), then the CS-to-relay limit at the relays. Both count the
same connections, one per counter operation, held for the whole operation.

The distributor also keeps what a planner needs to see where it blocks: per CS,
the connection attempts, the refusals and the most connections ever open at once
(the pool's peak occupancy); per node, its peak.

Health checks: every `dispatcher.health_check_s` the distributor checks each node. A
node failing its check is detached; once it passes again it is re-attached. The check
is TCP-style (does the relay application accept connections?), which a crashed node
fails and a hung one passes; the races issue adds the deep check through the HSM.

Policies: `round_robin` takes attached nodes in turn, blind to their load (as an L4
distributor does); `least_connections` takes the attached node with the fewest open
connections, lowest number first on ties.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from relay.core.node import Node

Policy = Literal["round_robin", "least_connections"]


@dataclass(frozen=True, slots=True)
class Refused:
    """A connection the distributor could not place, and the node that refused it."""

    reason: Literal["terminal_limit", "cs_limit", "node_limit", "no_node"]
    node: Node | None = None


_TERMINAL_LIMIT = Refused("terminal_limit")
_CS_LIMIT = Refused("cs_limit")
_NO_NODE = Refused("no_node")

#: Refusal reasons counted at the relay servers (the record's overflow events);
#: `terminal_limit` happens at the CS, before the relay tier.
RELAY_REASONS = frozenset({"cs_limit", "node_limit", "no_node"})


class Dispatcher:
    """Node choice, attachment and the per-CS connection bookkeeping."""

    def __init__(
        self,
        nodes: list[Node],
        cs_caps: Sequence[int],
        policy: Policy,
        terminal_caps: Sequence[int | None] | None = None,
    ) -> None:
        """`cs_caps`: each CS's CS-to-relay limit; `terminal_caps`: its
        terminal-to-CS limit (None, or None for a CS: no limit on that hop)."""
        self.nodes = nodes
        self.attached: list[bool] = [True] * len(nodes)
        self.policy: Policy = policy
        n = len(cs_caps)
        self.caps = list(cs_caps)
        # No limit on a hop is a limit nobody reaches: one integer comparison per hop
        # on the hot path, no None check.
        unlimited = 1 << 62
        self.terminal_caps = [unlimited if t is None else t for t in (terminal_caps or [None] * n)]
        if len(self.terminal_caps) != n:
            raise ValueError("terminal_caps and cs_caps differ in length")
        self._cs_open = [0] * n
        self.cs_count = n  # CS ids are 0 .. cs_count - 1
        # Where it blocks, per CS: attempts, refusals, the pool's peak occupancy.
        self.attempts = [0] * n
        self.refused = [0] * n  # at the relays (cs_limit, node_limit, no_node)
        self.refused_at_cs = [0] * n  # at the CS (terminal_limit)
        self.peak = [0] * n
        self._turn = 0
        # Nodes the health check took out; only these does a passing check put back,
        # so an operator's detach is never undone by the distributor.
        self._failed_check: set[int] = set()

    def route(self, cs: int) -> Node | Refused:
        """Place a new connection from CS `cs`: the node it opens on, or why it is refused.

        On success the connection is counted open on both the CS and the node until
        `release` is called.
        """
        attempts = self.attempts
        attempts[cs] = attempts[cs] + 1
        full = self._cs_full(cs)
        if full is not None:
            return full
        node = self._pick()
        if node is None:
            return self._refuse(cs, _NO_NODE)
        return self._on(cs, node)

    def place(self, cs: int, node: Node) -> Node | Refused:
        """Open a connection from CS `cs` directly on `node`, bypassing the choice of
        node (a client of the node's own port). The CS's limits and the node's still
        apply; attachment does not: that is the distributor's business."""
        attempts = self.attempts
        attempts[cs] = attempts[cs] + 1
        full = self._cs_full(cs)
        if full is not None:
            return full
        return self._on(cs, node)

    def _cs_full(self, cs: int) -> Refused | None:
        """Why CS `cs` can open no more connections (either hop's limit), if so."""
        held = self._cs_open[cs]
        if held >= self.terminal_caps[cs]:
            return self._refuse(cs, _TERMINAL_LIMIT)
        if held >= self.caps[cs]:
            return self._refuse(cs, _CS_LIMIT)
        return None

    def _on(self, cs: int, node: Node) -> Node | Refused:
        """Open the connection on `node`, if it has room."""
        if not node.has_room():
            return self._refuse(cs, Refused("node_limit", node))
        self._open(cs, self._cs_open[cs], node)
        return node

    def _open(self, cs: int, held: int, node: Node) -> None:
        held += 1
        self._cs_open[cs] = held
        if held > self.peak[cs]:
            self.peak[cs] = held
        node.active += 1
        if node.active > node.peak:
            node.peak = node.active

    def _refuse(self, cs: int, refused: Refused) -> Refused:
        if refused is _TERMINAL_LIMIT:
            self.refused_at_cs[cs] += 1
        else:
            self.refused[cs] += 1
        return refused

    def release(self, node: Node, cs: int) -> None:
        """The connection from `cs` on `node` closed."""
        self._cs_open[cs] -= 1
        node.active -= 1

    def _pick(self) -> Node | None:
        nodes, attached = self.nodes, self.attached
        if self.policy == "least_connections":
            best: Node | None = None
            fewest = 1 << 62
            for node, on in zip(nodes, attached):  # noqa: B905 - same length by construction
                if on and node.active < fewest:
                    best, fewest = node, node.active
            return best
        n = len(nodes)
        for step in range(n):
            i = (self._turn + step) % n
            if attached[i]:
                self._turn = i + 1
                return nodes[i]
        return None

    def attach(self, node: Node) -> None:
        """Send new connections to `node` again."""
        self.attached[node.number - 1] = True
        self._failed_check.discard(node.number)

    def detach(self, node: Node) -> None:
        """Stop sending new connections to `node`; open ones finish where they are."""
        self.attached[node.number - 1] = False

    def health(self, node: Node, ok: bool) -> str | None:
        """Apply one health-check result; returns "detach"/"attach" if that changed."""
        i = node.number - 1
        if not ok and self.attached[i]:
            self.attached[i] = False
            self._failed_check.add(node.number)
            return "detach"
        if ok and node.number in self._failed_check:
            self._failed_check.discard(node.number)
            self.attached[i] = True
            return "attach"
        return None

    def add(self, node: Node) -> None:
        """A new relay server joins the tier, attached."""
        if node.number != len(self.nodes) + 1:
            raise ValueError(f"relay #{node.number} added out of order")
        self.nodes.append(node)
        self.attached.append(True)

    def cs_open(self, cs: int) -> int:
        """Connections CS `cs` has open now."""
        return self._cs_open[cs]
