"""The planners' example notebook (docs/examples/planning.ipynb) runs top to bottom
on a real Jupyter kernel (nbclient, ipykernel), quick mode."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from tests.conftest import CONFIGS

NOTEBOOK = Path(__file__).resolve().parent.parent / "docs" / "examples" / "planning.ipynb"


def test_the_planning_notebook_runs_and_answers_its_questions() -> None:
    """Every cell runs without an error on a python3 kernel; the answers are there:
    the day's overflow count, the prediction's interval and the seek's answer."""
    nb = nbformat.read(NOTEBOOK, as_version=4)  # type: ignore[no-untyped-call]
    env = {"RELAYSIM_QUICK": "1", "RELAYSIM_CONFIGS": str(CONFIGS)}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        client = NotebookClient(
            nb,
            timeout=600,
            kernel_name="python3",
            resources={"metadata": {"path": NOTEBOOK.parent}},
        )
        client.execute()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    text = "\n".join(
        str(out.get("text", "")) + str(out.get("data", {}).get("text/plain", ""))
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
    )
    assert "overflow events at the relays:" in text
    assert "cheapest: {'relays.count':" in text
    assert "variance_from_readings" in text
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]  # fmt: skip
    assert errors == []
