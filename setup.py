"""Compiles the relay tier's hot modules with mypyc, when asked to.

`make` runs `python setup.py build_ext --inplace` in the project's venv (which has
mypy, and with it mypyc): the modules below become C extensions beside their
sources, and the same Python runs about 1.6 times faster (docs/performance.md,
"Compiled core"). `pip install` alone (in its isolated build environment, without
mypyc) installs the pure-Python package; so does a machine without a C compiler
(the extensions are optional). `relay/__init__.py` refuses to import a compiled
module older than its source, so an edit is never shadowed by a stale build.
"""

from __future__ import annotations

from typing import Any

from setuptools import setup

#: The modules a replay spends its time in: the model, the fast engine, the arrivals.
CORE = [
    "relay/core/request.py",
    "relay/core/ledger.py",
    "relay/core/dispatcher.py",
    "relay/core/node.py",
    "relay/core/hsm.py",
    "relay/core/monitor.py",
    "relay/core/timer.py",
    "relay/core/workarea.py",
    "relay/core/backend.py",
    "relay/core/tier.py",
    "relay/core/rng.py",
    "relay/core/agenda.py",
    "relay/core/sketch.py",
    "relay/engines/fast.py",
    "loadgen/arrivals.py",
]


def ext_modules() -> list[Any]:
    """mypyc's extensions for CORE, or none where mypyc is not installed."""
    try:
        from mypyc.build import mypycify
    except ImportError:
        return []
    # The shared runtime goes inside the package (relay.native__mypyc), where the
    # editable install's finder sees it.
    exts = mypycify(["--no-warn-unused-configs", *CORE], opt_level="3", group_name="relay.native")
    for ext in exts:
        ext.optional = True  # a failed compile leaves the pure-Python module
    return exts


setup(ext_modules=ext_modules())
