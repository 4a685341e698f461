"""relaysim: the 2016 My Number card relay tier, its legacy and fixed designs.

The core modules (dispatcher, node, hsm, monitor, timer, backend, workarea, tier,
ledger) are plain Python: they are handed `now` and events and never touch trio,
the wall clock or the global random generator. Drivers (`relay.driver_trio`) run
them under a clock of their choice.
"""

__version__ = "0.1.0"
