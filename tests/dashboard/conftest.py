"""Fixtures for the dashboard tests: small simulated crowds written as files, an isolated data directory."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `pytest` (not `python -m pytest`) does not put the root on sys.path
    sys.path.insert(0, str(ROOT))
APP = str(ROOT / "dashboard" / "app.py")


@pytest.fixture(autouse=True)
def kdcrowd_home(tmp_path, monkeypatch):
    """Every test gets its own runs database (the job manager is cached per data directory)."""
    home = tmp_path / "kdhome"
    monkeypatch.setenv("KDCROWD_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def small_crowd_files(tmp_path_factory) -> dict[str, bytes]:
    """A small simulated crowd as file bytes: answers, features, gold, test_features, test_gold."""
    from kdcrowd_core.simulate import simulate_crowd
    sim = simulate_crowd(n_items=240, n_classes=3, n_features=8, n_workers=12, answers_per_item=(2, 4),
                         gold_fraction=0.3, n_test=60, class_names=["cat", "dog", "bird"], seed=3)
    d = tmp_path_factory.mktemp("crowd")
    written = sim.to_files(d)
    return {k: written[f"{k}.csv"].read_bytes() for k in ("answers", "features", "gold", "test_features", "test_gold")}


@pytest.fixture(autouse=True)
def full_error_details():
    """Show real exception messages in AppTest (the shipped config hides details from browser users)."""
    from streamlit import config
    old = config.get_option("client.showErrorDetails")
    config.set_option("client.showErrorDetails", "full")
    yield
    config.set_option("client.showErrorDetails", old)
