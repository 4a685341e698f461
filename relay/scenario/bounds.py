"""Values a bound in the scenario overrides: a setting that changes nothing.

A planner who raises `load.cs_connections.base` from 30 to 60 on a file whose
`maximum` is 30 gets the same run, and would conclude the limit does not matter.
`clamped` names each such value with the bound that wins, so the CLI, sweeps and
the library can say so.
"""

from __future__ import annotations

from relay.scenario.schema import Scenario


def clamped(scenario: Scenario) -> list[str]:
    """One line per value a bound of `scenario` clamps: the key, its value, the
    bound and what it does."""
    lines: list[str] = []
    caps = scenario.load.cs_connections
    if caps.base > caps.maximum:
        lines.append(
            f"load.cs_connections.base={caps.base} is above load.cs_connections.maximum="
            f"{caps.maximum}: every CS's limit by the formula is {caps.maximum} "
            "(raise maximum with it)"
        )
    return lines
