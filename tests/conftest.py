"""Shared fixtures: tiny simulated crowds and the location of the real datasets."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]


def datasets_dir() -> Path:
    """../shared/datasets relative to the project root, or $KDCROWD_DATA."""
    env = os.environ.get("KDCROWD_DATA")
    return Path(env) if env else ROOT.parent / "shared" / "datasets"


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    d = datasets_dir()
    if not d.is_dir():
        pytest.skip(f"real datasets not found at {d} (set KDCROWD_DATA to run these tests)")
    return d


@pytest.fixture
def toy_frame() -> pd.DataFrame:
    """A hand-made crowd: 4 items, 3 workers, string labels."""
    return pd.DataFrame({
        "task": ["t1", "t1", "t1", "t2", "t2", "t3", "t3", "t3", "t4"],
        "worker": ["w1", "w2", "w3", "w1", "w2", "w1", "w2", "w3", "w3"],
        "label": ["cat", "cat", "dog", "dog", "dog", "cat", "dog", "dog", "bird"],
    })


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
