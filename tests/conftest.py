"""Shared test helpers: small scenarios built in code, no files needed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from relay.config import Scenario

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs"


def scenario(**over: Any) -> Scenario:
    """A small valid scenario with nested overrides, e.g. scenario(load={"requests": 50})."""
    base: dict[str, Any] = {"name": "test", "load": {"requests": 200}}
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    return Scenario.model_validate(base)


@pytest.fixture
def tmp_yaml(tmp_path: Path) -> Callable[..., Path]:
    """Write YAML text to a file and return its path."""

    def write(text: str, name: str = "scenario.yaml") -> Path:
        p = tmp_path / name
        p.write_text(text, encoding="utf-8")
        return p

    return write
