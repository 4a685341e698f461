#!/usr/bin/env python3
"""A cut of 29 March on the fast engine, for instruction counts under valgrind.

Wall times on a shared machine drift; instructions do not. Run it under callgrind
to compare two versions of the code on the same work:

    valgrind --tool=callgrind .venv/bin/python bench/replay_cut.py 100000

(`I refs` at the end is the whole process, imports included; the same imports on
both sides cancel out in a comparison). docs/performance.md has the table.
"""

from __future__ import annotations

import sys

from relay.engines import fast
from relay.scenario.build import build
from relay.scenario.schema import load_scenario


def main() -> None:
    messages = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    s = load_scenario("configs/2016-03-29.yaml", [f"load.requests={messages}"])
    built = build(s)
    arrivals = list(built.arrivals)
    fast.run(built.tier, iter(arrivals), built.tier.params.events)


if __name__ == "__main__":
    main()
