"""A million answers read correctly (the speed itself is measured in benchmarks/, not asserted here)."""
from __future__ import annotations

import numpy as np
import pytest

from kdcrowd_core.io import read_answers


@pytest.mark.slow
def test_one_million_rows_long_csv(tmp_path):
    rng = np.random.default_rng(0)
    n = 1_000_000
    task = rng.integers(0, 200_000, n).astype(str)
    worker = np.char.add("w", rng.integers(0, 2_000, n).astype(str))
    label = np.array(["cat", "dog", "bird", "fish", "cow"])[rng.integers(0, 5, n)]
    body = "\n".join(np.char.add(np.char.add(np.char.add(np.char.add(task, ","), worker), ","), label).tolist())
    p = tmp_path / "big.csv"
    p.write_text("task,worker,label\n" + body + "\n")
    d = read_answers(p)
    assert d.report[0].rows_read == n and d.n_answers + d.report[0].duplicates == n
    assert d.n_classes == 5 and d.n_workers == 2_000
