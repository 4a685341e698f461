"""relaysim: the 2016 My Number card relay tier, its legacy and fixed designs.

The core modules (dispatcher, node, hsm, monitor, timer, backend, workarea, tier,
ledger) are plain Python: they are handed `now` and events and never touch trio,
the wall clock or the global random generator. Drivers (`relay.engines.trio`) run
them under a clock of their choice. `make` compiles them (with the fast engine and
loadgen's arrivals) with mypyc (setup.py); the sources stay the truth.

As a library (docs/api.md), the stable front is here, loaded on first use so the
CLI does not pay for pandas: `relay.load_scenario`, `relay.replay`, `relay.sweep`,
`relay.by_point`, `relay.predict`, `relay.seek`, and `relay.Result`, `relay.ConfigError`,
`relay.ClampWarning` (all from `relay.api`).
"""

from pathlib import Path
from typing import Any

__version__ = "0.1.0"

#: The library's names, each loaded from `relay.api` when first asked for.
API = ("load_scenario", "replay", "sweep", "by_point", "predict", "seek", "Result",
       "Prediction", "Sought", "Scenario", "ConfigError", "ClampWarning")  # fmt: skip


def __getattr__(name: str) -> Any:
    if name in API:
        from relay import api

        return getattr(api, name)
    raise AttributeError(f"module 'relay' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *API])


def _refuse_stale_builds() -> None:
    """A compiled module older than its source would run the old code: stop, and
    say how to rebuild (or drop) the compiled modules."""
    here = Path(__file__).parent
    for built in [*here.rglob("*.cpython-*.so"), *(here.parent / "loadgen").glob("*.cpython-*.so")]:
        source = built.parent / (built.name.split(".", 1)[0] + ".py")
        if source.exists() and source.stat().st_mtime > built.stat().st_mtime:
            raise ImportError(
                f"{source} changed after it was compiled ({built.name}): run `make compile`, "
                "or `make pure` to use the Python sources only"
            )


_refuse_stale_builds()
