#!/usr/bin/env python3
"""Benchmark: what `serve --toxics` costs with no toxic on, against plain serve.

With `--toxics` every connection passes through the in-process proxy
(`relay/net/proxy.py`: a link of the simulated network and two pumps); without it,
the sockets are the server's own. Both are measured in this run, alternating,
with bench/net.py's client and serve settings (services of a microsecond, caps
that never bite): `--rounds` (default 3) rounds of `--seconds` (default 5) each,
after a second of warm-up.

Last line JSON: bench, plain_rps, toxics_rps (medians), ratio (toxics / plain),
plain_p50_ms, toxics_p50_ms.

    python bench/toxics.py [--seconds 5] [--rounds 3] [--connections 50]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

from net import QUICK, ROOT, measure, ms


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--connections", type=int, default=50)
    args = ap.parse_args()
    serve = [sys.executable, "-m", "relay", "serve", str(ROOT / "configs" / "smoke.yaml"), *QUICK]
    rates: dict[str, list[float]] = {"plain": [], "toxics": []}
    p50: dict[str, list[float]] = {"plain": [], "toxics": []}
    for _ in range(args.rounds):
        for name, extra in (("plain", []), ("toxics", ["--toxics"])):
            rate, latencies = measure([*serve, *extra], args.connections, args.seconds, name)
            rates[name].append(rate)
            p50[name] += ms(latencies, 50)
    plain, toxics = statistics.median(rates["plain"]), statistics.median(rates["toxics"])
    print(
        json.dumps(
            {
                "bench": "toxics",
                "connections": args.connections,
                "seconds": args.seconds,
                "plain_rps": round(plain),
                "toxics_rps": round(toxics),
                "ratio": round(toxics / plain, 3),
                "plain_p50_ms": statistics.median(p50["plain"]),
                "toxics_p50_ms": statistics.median(p50["toxics"]),
            }
        )
    )


if __name__ == "__main__":
    main()
