"""The bench scripts as modules (they import their siblings by name, so bench/ is on the path while
one is imported)."""
from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _import_bench(name: str):
    sys.path.insert(0, str(BENCH))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(BENCH))


@pytest.fixture(scope="module")
def protocol():
    return _import_bench("protocol")


@pytest.fixture(scope="module")
def role_swap():
    return _import_bench("role_swap")


@pytest.fixture(scope="module")
def draw_luck():
    return _import_bench("draw_luck")


@pytest.fixture(scope="module")
def fit():
    return _import_bench("fit")


@pytest.fixture(scope="module")
def common():
    return _import_bench("_common")
