"""Designs: the January 2016 `legacy` relay and the April 2016 `fixed` one.

A design is data: one named switch per fix, so any single fix can be turned off to
show what it buys (the ablation table). `legacy` has every switch off, `fixed`
every switch on; a scenario's `switches:` block or `--set switches.NAME=false`
overrides single switches on top of the chosen preset.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Literal

DesignName = Literal["legacy", "fixed"]


@dataclass(frozen=True, slots=True)
class Design:
    """The set of fixes a run has. Field docs say which incident fact each one answers."""

    name: str
    #: Cause 2, April fix: the termination path checks that the work area was
    #: allocated before freeing it.
    checked_free: bool
    #: Cause 2, in depth: the timeout is a deadline owned by one request, so a
    #: notification can never outlive it and reach the next request.
    request_scoped_timer: bool
    #: Cause 1, April BIOS/CPU fix: a monitor probe landing on the core that
    #: processes an HSM reply no longer loses the reply.
    probe_safe_interrupts: bool
    #: Cause 1, in depth: every HSM call has its own deadline and a stuck HSM lane
    #: is reset instead of blocking the node forever.
    hsm_call_deadline: bool
    #: The distributor checks nodes end to end through the HSM (not a TCP connect)
    #: and detaches a failing node until it passes again.
    deep_health_check: bool
    #: A supervisor restarts a crashed relay application at once, instead of
    #: operators noticing after a detection delay.
    auto_restart: bool
    #: 22 February slowdown, fix of 26 February: the backend names its threads by a
    #: rule that keeps names short, so logging a name costs the same all day.
    short_thread_names: bool
    #: 22 February slowdown, fix of 11 March: the backend's memory allocation raised
    #: from 512 MB to 2 GB, so it holds four times the work at once.
    large_backend_memory: bool
    #: Data inconsistency, April 2016: a terminal re-sends a chip-writing operation
    #: that failed, with the same idempotency key, until the backend confirms it.
    resend_chip_operations: bool
    #: Its other half: the backend applies each idempotency key at most once, so a
    #: re-send of an operation it already applied is not applied again.
    idempotent_backend: bool

    @classmethod
    def switch_names(cls) -> tuple[str, ...]:
        """The names of all fix switches, in declaration order."""
        return tuple(f.name for f in fields(cls) if f.name != "name")

    def switches(self) -> dict[str, bool]:
        """The switches as a plain mapping (for summaries and logs)."""
        return {n: bool(getattr(self, n)) for n in self.switch_names()}

    def with_switches(self, overrides: dict[str, bool]) -> Design:
        """This design with some switches overridden; unknown names raise KeyError."""
        unknown = set(overrides) - set(self.switch_names())
        if unknown:
            raise KeyError(sorted(unknown)[0])
        changed = {k: v for k, v in overrides.items() if getattr(self, k) != v}
        if not changed:
            return self
        return replace(self, name=f"{self.name}+custom", **overrides)


def preset(name: DesignName) -> Design:
    """The `legacy` (all fixes off) or `fixed` (all fixes on) design."""
    on = name == "fixed"
    return Design(name, **dict.fromkeys(Design.switch_names(), on))
