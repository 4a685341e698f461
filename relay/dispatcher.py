"""The traffic distributor: spreads CS connections over the attached relay nodes.

It also keeps each CS within its simultaneous-connection cap towards the relay tier.
A connection it cannot place is refused with a reason, and counted as a
connection-overflow event (the 12,650 of 29 March 2016 are these):

- `cs_limit`: the CS already has as many connections open as its cap allows;
- `node_limit`: the node the policy picked is at its connection limit;
- `no_node`: no node is attached at all.

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

from relay.node import Node

Policy = Literal["round_robin", "least_connections"]


@dataclass(frozen=True, slots=True)
class Refused:
    """A connection the distributor could not place, and the node that refused it."""

    reason: Literal["cs_limit", "node_limit", "no_node"]
    node: Node | None = None


_CS_LIMIT = Refused("cs_limit")
_NO_NODE = Refused("no_node")


class Dispatcher:
    """Node choice, attachment and the per-CS connection bookkeeping."""

    def __init__(self, nodes: list[Node], cs_caps: Sequence[int], policy: Policy) -> None:
        self.nodes = nodes
        self.attached: list[bool] = [True] * len(nodes)
        self.policy: Policy = policy
        self._caps = list(cs_caps)
        self._cs_open = [0] * len(self._caps)
        self.cs_count = len(self._caps)  # CS ids are 0 .. cs_count - 1
        self._turn = 0
        # Nodes the health check took out; only these does a passing check put back,
        # so an operator's detach is never undone by the distributor.
        self._failed_check: set[int] = set()

    def route(self, cs: int) -> Node | Refused:
        """Place a new connection from CS `cs`: the node it opens on, or why it is refused.

        On success the connection is counted open on both the CS and the node until
        `release` is called.
        """
        if self._cs_open[cs] >= self._caps[cs]:
            return _CS_LIMIT
        node = self._pick()
        if node is None:
            return _NO_NODE
        if not node.has_room():
            return Refused("node_limit", node)
        self._cs_open[cs] += 1
        node.active += 1
        return node

    def place(self, cs: int, node: Node) -> Node | Refused:
        """Open a connection from CS `cs` directly on `node`, bypassing the choice of
        node (a client of the node's own port). The CS's cap and the node's limit
        still apply; attachment does not: that is the distributor's business.

        The same checks as `route` makes around its choice, written out again
        because `route` is on every request of a whole-day replay.
        """
        if self._cs_open[cs] >= self._caps[cs]:
            return _CS_LIMIT
        if not node.has_room():
            return Refused("node_limit", node)
        self._cs_open[cs] += 1
        node.active += 1
        return node

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
