"""The run's worker-matrices file: nested JSON for small runs, .npz + JSON summary with many classes."""
from __future__ import annotations

import json

import numpy as np
import pytest

from kdcrowd_core.errors import CrowdDataError
from kdcrowd_core.io.worker_matrices import NPZ_NAME, read_worker_matrices, write_worker_matrices


def _stages(R: int = 3, K: int = 4, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    out = {}
    for name in ("before", "teacher", "after"):
        T = rng.dirichlet(np.ones(K), size=(R, K))
        out[name] = (f"method {name}", T)
    return out


def test_small_runs_keep_the_nested_json(tmp_path):
    stages = _stages()
    files = write_worker_matrices(tmp_path, ["a", "b", "c", "d"], ["w1", "w2", "w3"], stages)
    assert [f.name for f in files] == ["worker_matrices.json"] and not (tmp_path / NPZ_NAME).exists()
    doc = json.loads((tmp_path / "worker_matrices.json").read_text())
    assert {"before", "teacher", "after"} == set(doc) and len(doc["after"]["workers"]["w2"]) == 4
    back = read_worker_matrices(tmp_path)
    for name, (method, T) in stages.items():
        assert back[name]["method"] == method and back[name]["workers"] == ["w1", "w2", "w3"]
        np.testing.assert_allclose(back[name]["matrices"], T, atol=1e-6)


def test_many_classes_write_npz_and_a_summary(tmp_path):
    from kdcrowd_core.inference import get_method
    from kdcrowd_core.simulate import simulate_crowd
    sim = simulate_crowd(n_items=200, n_classes=8, n_features=0, n_workers=6, seed=1)
    fit = get_method("adaptive", sparse_from_classes=2).fit(sim.data)     # compact matrices as input
    stages = {"before": ("hierarchical_dawid_skene", fit.matrices_), "after": ("stage2", fit.worker_matrices_)}
    files = write_worker_matrices(tmp_path, sim.data.classes, sim.data.worker_ids, stages, max_json_cells=10)
    assert {f.name for f in files} == {"worker_matrices.json", NPZ_NAME}
    doc = json.loads((tmp_path / "worker_matrices.json").read_text())
    assert doc["format"] == "npz" and doc["file"] == NPZ_NAME
    w0 = str(sim.data.worker_ids[0])
    np.testing.assert_allclose(doc["stages"]["after"]["diagonal"][w0], np.diagonal(fit.worker_matrices_[0]),
                               atol=1e-6)
    with np.load(tmp_path / NPZ_NAME, allow_pickle=False) as z:     # plain arrays, no pickled objects
        assert z["before"].dtype == np.float32 and z["before"].shape == (6, 8, 8)
    back = read_worker_matrices(tmp_path / "worker_matrices.json")
    assert back["before"]["workers"] == [str(w) for w in sim.data.worker_ids]
    np.testing.assert_allclose(back["before"]["matrices"], fit.worker_matrices_, atol=1e-6)
    np.testing.assert_allclose(back["after"]["matrices"], fit.worker_matrices_, atol=1e-6)


def test_old_runs_nested_json_still_read(tmp_path):
    """A worker_matrices.json written before the .npz format (the same nested layout, no "format" key)."""
    old = {"before": {"method": "dawid_skene", "layout": "matrix[i][j] = ...", "classes": ["x", "y"],
                      "workers": {"7": [[0.9, 0.1], [0.2, 0.8]]}}}
    (tmp_path / "worker_matrices.json").write_text(json.dumps(old))
    back = read_worker_matrices(tmp_path)
    assert back["before"]["workers"] == ["7"]
    np.testing.assert_allclose(back["before"]["matrices"], [[[0.9, 0.1], [0.2, 0.8]]])


def test_missing_npz_or_bad_file_is_a_clear_error(tmp_path):
    write_worker_matrices(tmp_path, ["a", "b"], ["w"], {"after": ("m", np.eye(2)[None])}, max_json_cells=0)
    (tmp_path / NPZ_NAME).unlink()
    with pytest.raises(CrowdDataError, match="worker_matrices.npz"):
        read_worker_matrices(tmp_path)
    (tmp_path / "worker_matrices.json").write_text("{not json")
    with pytest.raises(CrowdDataError, match="worker_matrices.json"):
        read_worker_matrices(tmp_path)
