"""The package layout: no module imports itself back through others.

The layering between packages is import-linter's job (`make lint`, contracts in
pyproject.toml); this holds every module, inside a package too, free of cycles.
"""

from __future__ import annotations

import grimp


def test_no_import_cycles() -> None:
    """No module of relay, loadgen or hsm_adapter is imported, directly or not, by a
    module it imports."""
    graph = grimp.build_graph("relay", "loadgen", "hsm_adapter")
    cycles = sorted(
        (module, dep)
        for module in graph.modules
        for dep in graph.find_modules_directly_imported_by(module)
        if dep in graph.modules and graph.chain_exists(importer=dep, imported=module)
    )
    assert cycles == []
