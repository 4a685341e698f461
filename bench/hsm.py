#!/usr/bin/env python3
"""Benchmark: ECDSA P-256 signs on the real token, raw and through the trio lane.

Runs, one after the other on the same machine and token (the project's, set up by
`relaysim hsm init`; `make bench-hsm` does that first):
1. **raw**: one thread, no trio: python-pkcs11 signing SHA-256 digests in a loop,
   what the token can do for a single caller (the ceiling of one lane);
2. **adapter**: `open_pkcs11` with 64 concurrent trio tasks signing in a loop, every
   call through the queue, the worker process and its deadline.

Each for `--seconds` (default 5) after a short warm-up. Prints progress lines, then
one JSON line: bench, raw_ops_s, adapter_ops_s, ratio (adapter / raw), p50_ms and
p99_ms (per-call latency through the adapter), tasks. Target (HSM issue): ratio of at
least 0.7.

    python bench/hsm.py [--seconds 5] [--tasks 64]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time

import numpy as np
import trio

from hsm_adapter.lane import open_pkcs11
from hsm_adapter.token import TokenConfig
from hsm_adapter.worker import Keys, _load, _open, _token
from relay.core.summary import percentiles


def raw_rate(cfg: TokenConfig, seconds: float) -> float:
    """Signs per second from one thread, straight on the token (no trio, no worker)."""
    import os

    os.environ["SOFTHSM2_CONF"] = cfg.env()["SOFTHSM2_CONF"]
    session = _open(_token(_load(cfg.module), cfg.label), cfg.pin().reveal())
    keys = Keys(session, cfg.sign_label, cfg.enc_label, cfg.mechanism)
    data = b"card management request"
    for _ in range(200):  # warm-up
        keys.sign(data)
    n, t0 = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - t0) < seconds:
        for _ in range(100):
            keys.sign(data)
        n += 100
    session.close()
    return n / elapsed


async def adapter_rate(cfg: TokenConfig, seconds: float, tasks: int) -> tuple[float, list[float]]:
    """Signs per second from `tasks` trio tasks through the lane, and each call's latency."""
    latencies: list[float] = []
    async with open_pkcs11(cfg, deadline=5.0) as hsm:
        for _ in range(200):  # warm-up: the worker's first calls
            await hsm.sign(b"warm-up")
        stop = trio.current_time() + seconds
        count = 0

        async def client() -> None:
            nonlocal count
            data = hashlib.sha256(b"card management request").digest()
            while (start := trio.current_time()) < stop:
                await hsm.sign(data)
                latencies.append(trio.current_time() - start)
                count += 1

        t0 = trio.current_time()
        async with trio.open_nursery() as nursery:
            for _ in range(tasks):
                nursery.start_soon(client)
        elapsed = trio.current_time() - t0
    return count / elapsed, latencies


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--tasks", type=int, default=64)
    args = ap.parse_args()
    cfg = TokenConfig()
    raw = raw_rate(cfg, args.seconds)
    print(f"raw: {raw:,.0f} signs/s from one thread", file=sys.stderr)
    rate, latencies = trio.run(adapter_rate, cfg, args.seconds, args.tasks)
    p50, p99 = percentiles(np.array(latencies), (50, 99))
    print(f"adapter: {rate:,.0f} signs/s from {args.tasks} tasks", file=sys.stderr)
    print(
        json.dumps(
            {
                "bench": "hsm",
                "raw_ops_s": round(raw),
                "adapter_ops_s": round(rate),
                "ratio": round(rate / raw, 3),
                "p50_ms": round(p50 * 1000, 3),
                "p99_ms": round(p99 * 1000, 3),
                "tasks": args.tasks,
            }
        )
    )


if __name__ == "__main__":
    main()
