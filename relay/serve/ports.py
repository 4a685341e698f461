"""Listening on loopback, with errors that name the port and what it was for.

Serve mode opens several ports (the dispatcher's, one per relay node, /metrics,
the admin endpoint); when one cannot be had, the user must learn which one.
"""

from __future__ import annotations

import trio

from relay.net import REAL, Network

HOST = "127.0.0.1"
HIGHEST = 65535


class PortError(Exception):
    """A port that cannot be listened on; the message is one line naming it."""


def check_range(base: int, count: int) -> None:
    """Refuse a base port whose `count` following ports (base + 1 .. base + count)
    would leave the range of ports: they must not wrap round to low ports."""
    if base and base + count > HIGHEST:
        raise PortError(
            f"--port {base}: the relay nodes need ports {base + 1}..{base + count}, "
            f"past {HIGHEST}; choose a port up to {HIGHEST - count}"
        )


async def listen(
    port: int, role: str, network: Network = REAL
) -> tuple[trio.abc.Listener[trio.abc.Stream], int]:
    """A listener on 127.0.0.1:`port` (0: any free port) for `role` on `network`, and
    the port it got; or PortError."""
    try:
        return await network.listen(HOST, port)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise PortError(f"cannot listen on {HOST}:{port} ({role}): {reason}") from None
