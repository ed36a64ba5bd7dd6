"""Tests of kdcrowd_core.simulate and of the committed sample_data/."""
from __future__ import annotations

import hashlib
import importlib.util
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kdcrowd_core.data import CrowdData
from kdcrowd_core.errors import CrowdDataError
from kdcrowd_core.metrics import empirical_confusion, vote_counts, worker_matrix_error, worker_matrix_errors
from kdcrowd_core.simulate import ARCHETYPES, _sample_workers, simulate_crowd

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data"


def _arrays(sim):
    d = sim.data
    return [d.item, d.worker, d.label, d.gold, d.features, sim.truth, sim.true_matrices,
            sim.item_difficulty, sim.test_features, sim.test_truth]


# --------------------------------------------------------------------------- determinism / shapes
def test_same_seed_same_crowd_and_other_seed_differs():
    kw = dict(n_items=300, n_classes=4, n_features=5, n_workers=20, instance_noise=0.5,
              gold_fraction=0.2, n_test=50, worker_id_format="mturk")
    a, b, c = simulate_crowd(seed=3, **kw), simulate_crowd(seed=3, **kw), simulate_crowd(seed=4, **kw)
    for x, y in zip(_arrays(a), _arrays(b)):
        np.testing.assert_array_equal(x, y)
    assert list(a.data.worker_ids) == list(b.data.worker_ids)
    assert list(a.archetype) == list(b.archetype)
    pd.testing.assert_frame_equal(a.answers_frame(), b.answers_frame())
    assert not np.array_equal(a.data.label, c.data.label) or not np.array_equal(a.data.worker, c.data.worker)
    assert list(a.data.worker_ids) != list(c.data.worker_ids)


def test_shapes_types_and_bounds():
    sim = simulate_crowd(n_items=400, n_classes=6, n_features=7, n_workers=30, answers_per_item=(2, 4),
                         gold_fraction=0.25, n_test=40, instance_noise=0.3, seed=1)
    d = sim.data
    N, K, R = d.n_items, d.n_classes, d.n_workers
    assert (N, K) == (400, 6) and R <= 30
    assert d.features.shape == (N, 7) and d.features.dtype == np.float32
    assert d.feature_names == [f"f{k}" for k in range(7)]
    assert sim.truth.shape == (N,) and sim.truth.dtype == np.int64
    assert sim.true_matrices.shape == (R, K, K) and sim.true_matrices.dtype == np.float64
    np.testing.assert_allclose(sim.true_matrices.sum(axis=2), 1.0)
    assert sim.archetype.shape == (R,) and set(sim.archetype) <= set(ARCHETYPES)
    assert sim.item_difficulty.shape == (N,)
    assert np.all((sim.item_difficulty >= 0) & (sim.item_difficulty < 1))
    assert sim.test_features.shape == (40, 7) and sim.test_features.dtype == np.float32
    assert sim.test_truth.shape == (40,) and len(sim.test_ids) == 40
    assert not set(sim.test_ids) & set(d.item_ids)
    # gold: exact count, equal to the truth where given
    assert d.gold_mask.sum() == 100
    np.testing.assert_array_equal(d.gold[d.gold_mask], sim.truth[d.gold_mask])
    # answers per item within bounds, every worker answered, no repeated (item, worker)
    per_item = d.answers_per_item()
    assert per_item.min() >= 2 and per_item.max() <= 4
    assert set(np.unique(per_item)) == {2, 3, 4}
    assert d.answers_per_worker().min() >= 1
    pairs = d.item * R + d.worker
    assert np.unique(pairs).size == pairs.size
    d.validate()


def test_no_features_and_int_ids():
    sim = simulate_crowd(n_items=200, n_features=0, n_workers=10, n_test=5, item_id_format="int", seed=2)
    assert sim.data.features is None and sim.test_features is None
    assert list(sim.data.item_ids[:3]) == [0, 1, 2] and list(sim.test_ids) == [200, 201, 202, 203, 204]
    assert np.all(sim.item_difficulty >= 0)  # difficulty still defined from a hidden latent


def test_id_formats_class_names_and_pairs_by_name():
    names = ["cat", "dog", "fox", "owl"]
    sim = simulate_crowd(n_items=100, n_classes=4, n_workers=12, class_names=names,
                         worker_id_format="mturk", item_id_format=lambda i: f"img-{i}",
                         archetypes={"confuser": 1.0}, confuser_pairs=[("cat", "dog")], seed=0)
    assert list(sim.data.classes) == names
    assert all(re.fullmatch(r"A[0-9A-Z]{13}", w) for w in sim.data.worker_ids)
    assert sim.data.item_ids[0] == "img-0"
    T = sim.base_matrices
    assert np.all(T[:, 0, 1] > T[:, 0, 0]) and np.all(T[:, 1, 0] > T[:, 1, 1])
    assert np.all(T[:, 2, 2] > 0.7) and np.all(T[:, 3, 3] > 0.7)
    s2 = simulate_crowd(n_items=50, n_workers=5, worker_id_format="ann_{:02d}", seed=0)
    assert s2.data.worker_ids[0].startswith("ann_")


@pytest.mark.parametrize("kw", [
    dict(answers_per_item=(2, 60), n_workers=50),
    dict(answers_per_item=(0, 2)),
    dict(archetypes={"wizard": 1.0}),
    dict(archetypes={"expert": 0.0}),
    dict(instance_noise=1.5),
    dict(gold_fraction=-0.1),
    dict(overlap=0.0),
    dict(worker_activity="pareto"),
    dict(n_classes=1),
    dict(class_names=["a", "b"]),
    dict(class_prior=[1, 2]),
    dict(confuser_pairs=[("class_0", "nope")]),
    dict(item_id_format="no-placeholder"),
    dict(item_id_format=lambda i: "same"),
])
def test_bad_arguments_raise_crowd_data_error(kw):
    with pytest.raises(CrowdDataError):
        simulate_crowd(n_items=20, **kw)


# --------------------------------------------------------------------------- sampling law
def test_worker_sampling_without_replacement_matches_successive_sampling_law():
    w = np.array([0.5, 0.3, 0.15, 0.05])
    n = np.full(40_000, 2)
    out = _sample_workers(np.random.default_rng(0), n, w).reshape(-1, 2)
    assert np.all(out[:, 0] != out[:, 1])
    # exact inclusion probability of r in a size-2 successive sample
    incl = w + np.array([sum(w[s] * w[r] / (1 - w[s]) for s in range(4) if s != r) for r in range(4)])
    freq = np.bincount(out.ravel(), minlength=4) / n.size
    np.testing.assert_allclose(freq, incl, atol=0.01)
    # first pick follows the weights
    np.testing.assert_allclose(np.bincount(out[:, 0], minlength=4) / n.size, w, atol=0.01)


def test_worker_sampling_fallback_when_every_worker_is_needed():
    w = np.array([1.0, 1e-7, 1e-7, 1.0, 1e-7])
    n = np.array([5, 3, 5, 2])
    out = _sample_workers(np.random.default_rng(1), n, w)
    starts = np.r_[0, np.cumsum(n)[:-1]]
    for s, k in zip(starts, n):
        grp = out[s:s + k]
        assert np.unique(grp).size == k
    assert sorted(out[:5]) == [0, 1, 2, 3, 4]


def test_zipf_activity_is_skewed_and_uniform_is_not():
    kw = dict(n_items=3000, n_workers=50, n_features=0, seed=5)
    z = np.sort(simulate_crowd(worker_activity="zipf", **kw).data.answers_per_worker())[::-1]
    u = np.sort(simulate_crowd(worker_activity="uniform", **kw).data.answers_per_worker())[::-1]
    assert z[:5].sum() > 0.3 * z.sum()
    assert u[:5].sum() < 0.15 * u.sum()


# --------------------------------------------------------------------------- archetypes
@pytest.fixture(scope="module")
def big_crowd():
    """Large enough for empirical confusions: ~20k answers per worker kind."""
    return simulate_crowd(n_items=12_000, n_classes=4, n_features=0, n_workers=12, answers_per_item=(3, 3),
                          worker_activity="uniform",
                          archetypes={"expert": 2, "novice": 2, "confuser": 2, "spammer": 2,
                                      "one_answer_spammer": 2, "adversary": 2},
                          confuser_pairs=[(0, 1)], instance_noise=0.0, seed=11)


def test_archetype_counts_and_matrices(big_crowd):
    sim = big_crowd
    K = sim.data.n_classes
    assert pd.Series(sim.archetype).value_counts().to_dict() == {a: 2 for a in ARCHETYPES}
    T = sim.true_matrices
    acc = np.diagonal(T, axis1=1, axis2=2).mean(axis=1)
    by = {a: np.flatnonzero(sim.archetype == a) for a in ARCHETYPES}
    np.testing.assert_allclose(T[by["spammer"]], 1.0 / K)
    for r in by["one_answer_spammer"]:
        col = np.flatnonzero(T[r].sum(axis=0) == K)
        assert col.size == 1 and np.allclose(T[r][:, col[0]], 1.0)
    assert np.all(acc[by["adversary"]] < 1.0 / K)
    assert np.all((acc[by["expert"]] > 0.78) & (acc[by["expert"]] < 1.0))
    assert np.all((acc[by["novice"]] > 0.4) & (acc[by["novice"]] < 0.85))
    c = by["confuser"]
    assert np.all(T[c, 0, 1] > T[c, 0, 0]) and np.all(T[c, 1, 0] > T[c, 1, 1])
    assert np.all(T[c, 0, 1] >= 0.6) and np.all(T[c, 2, 2] > 0.7)


def test_generated_answers_follow_the_archetypes(big_crowd):
    sim = big_crowd
    d = sim.data
    K = d.n_classes
    E = empirical_confusion(d, sim.truth)
    by = {a: np.flatnonzero(sim.archetype == a) for a in ARCHETYPES}
    # spammers: every row close to uniform
    assert np.abs(E[by["spammer"]] - 1.0 / K).max() < 0.05
    # one-answer spammers: a single label
    for r in by["one_answer_spammer"]:
        assert np.unique(d.label[d.worker == r]).size == 1
    # confusers swap the pair, adversaries are below chance
    assert np.all(E[by["confuser"], 0, 1] > E[by["confuser"], 0, 0] + 0.2)
    correct = d.label == sim.truth[d.item]
    for r in by["adversary"]:
        assert correct[d.worker == r].mean() < 1.0 / K - 0.05
    # the whole matrices: empirical ~ true
    assert worker_matrix_error(E, sim.true_matrices) < 0.05


def test_instance_noise_effective_matrices_match_the_answers():
    sim = simulate_crowd(n_items=15_000, n_classes=4, n_features=3, n_workers=8, answers_per_item=(2, 2),
                         worker_activity="uniform", archetypes={"expert": 1.0}, expert_accuracy=(0.97, 0.99),
                         overlap=0.7, instance_noise=1.0, seed=3)
    d = sim.data
    E = empirical_confusion(d, sim.truth)
    err_true = worker_matrix_errors(E, sim.true_matrices)
    err_base = worker_matrix_errors(E, sim.base_matrices)
    assert np.all(err_true < 0.05)
    assert err_base.mean() > 3 * err_true.mean()  # the noise is really there
    # harder items get more wrong answers
    wrong = np.bincount(d.item, weights=(d.label != sim.truth[d.item]).astype(float), minlength=d.n_items) / 2
    hard = sim.item_difficulty > np.quantile(sim.item_difficulty, 0.8)
    assert wrong[hard].mean() > 3 * wrong[~hard].mean()


def test_overlap_makes_items_harder():
    kw = dict(n_items=2000, n_classes=5, n_features=16, n_workers=10, seed=0)
    easy = simulate_crowd(overlap=0.5, **kw).item_difficulty.mean()
    hard = simulate_crowd(overlap=2.0, **kw).item_difficulty.mean()
    assert hard > easy + 0.2


def test_class_prior_is_followed():
    sim = simulate_crowd(n_items=5000, n_classes=3, n_features=0, n_workers=10, class_prior=[0.6, 0.3, 0.1], seed=0)
    np.testing.assert_allclose(np.bincount(sim.truth) / 5000, [0.6, 0.3, 0.1], atol=0.02)


# --------------------------------------------------------------------------- files
def test_to_files_round_trip(tmp_path):
    sim = simulate_crowd(n_items=150, n_classes=3, n_features=4, n_workers=15, gold_fraction=0.2, n_test=20,
                         class_names=["a", "b", "c"], seed=7)
    files = sim.to_files(tmp_path)
    assert set(files) == {"answers.csv", "gold.csv", "truth.csv", "features.csv", "test_features.csv",
                          "test_gold.csv", "workers.csv", "README.md"}
    ans = pd.read_csv(tmp_path / "answers.csv")
    assert list(ans.columns) == ["item", "worker", "label"]
    data = CrowdData.from_frame(ans, item="item", classes=["a", "b", "c"])
    gold = pd.read_csv(tmp_path / "gold.csv").set_index("item")["label"]
    data = data.with_gold(gold)
    feats = pd.read_csv(tmp_path / "features.csv")
    data = data.with_features(feats.drop(columns="item").to_numpy(), feats["item"])
    assert (data.n_items, data.n_workers, data.n_answers) == (sim.data.n_items, sim.data.n_workers,
                                                              sim.data.n_answers)
    pd.testing.assert_frame_equal(data.to_frame().reset_index(drop=True),
                                  sim.data.to_frame().reset_index(drop=True), check_dtype=False)
    np.testing.assert_allclose(data.features, sim.data.features, atol=6e-5)
    assert data.gold_series().sort_index().equals(sim.data.gold_series().sort_index())
    wf = pd.read_csv(tmp_path / "workers.csv")
    assert list(wf.columns) == ["worker", "archetype", "true_accuracy", "answers"]
    assert len(pd.read_csv(tmp_path / "test_features.csv")) == 20
    truth = pd.read_csv(tmp_path / "truth.csv").set_index("item")["label"]
    assert truth.equals(sim.truth_series().rename_axis("item"))


# --------------------------------------------------------------------------- sample data
def _load_script():
    spec = importlib.util.spec_from_file_location("make_sample_data", ROOT / "scripts" / "make_sample_data.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


SAMPLE_FILES = ["answers.csv", "gold.csv", "features.csv", "test_features.csv", "test_gold.csv",
                "truth.csv", "workers_truth.csv", "README.md"]


def test_sample_data_is_what_the_script_writes(tmp_path):
    mod = _load_script()
    assert mod.main(["--out", str(tmp_path)]) == 0
    for name in SAMPLE_FILES:
        assert (SAMPLE / name).is_file(), f"sample_data/{name} is missing: run python scripts/make_sample_data.py"
        assert _digest(SAMPLE / name) == _digest(tmp_path / name), \
            f"sample_data/{name} differs from the script's output: run python scripts/make_sample_data.py"
    assert sum((SAMPLE / n).stat().st_size for n in SAMPLE_FILES) < 6_000_000


@pytest.fixture(scope="module")
def sample():
    ans = pd.read_csv(SAMPLE / "answers.csv")
    data = CrowdData.from_frame(ans, item="item")
    data = data.with_gold(pd.read_csv(SAMPLE / "gold.csv").set_index("item")["label"])
    feats = pd.read_csv(SAMPLE / "features.csv")
    data = data.with_features(feats.drop(columns="item").to_numpy(), feats["item"])
    truth = pd.read_csv(SAMPLE / "truth.csv").set_index("item")["label"]
    return data, truth


def test_sample_data_loads_and_has_the_promised_shape(sample):
    data, truth = sample
    assert (data.n_items, data.n_classes, data.features.shape[1]) == (3000, 8, 64)
    assert 55 <= data.n_workers <= 60
    assert set(data.classes) == {"beach", "city", "countryside", "desert", "forest", "lake", "mountain", "snow"}
    per_item = data.answers_per_item()
    assert per_item.min() >= 2 and per_item.max() <= 5
    assert int(data.gold_mask.sum()) == 300
    workers = pd.read_csv(SAMPLE / "workers_truth.csv")
    assert set(workers["archetype"]) == set(ARCHETYPES)
    assert set(workers["worker"]) == set(data.worker_ids)
    assert all(re.fullmatch(r"A[0-9A-Z]{13}", w) for w in workers["worker"])
    test = pd.read_csv(SAMPLE / "test_features.csv")
    tg = pd.read_csv(SAMPLE / "test_gold.csv")
    assert test.shape == (1000, 65) and list(test["item"]) == list(tg["item"])
    assert not set(test["item"]) & set(data.item_ids)
    assert set(truth.index) == set(data.item_ids)


@pytest.mark.filterwarnings("ignore")  # crowd-kit's own pandas deprecation warnings
def test_sample_data_is_a_realistic_crowd(sample):
    """Majority vote 75-85 % correct; Dawid-Skene (crowd-kit) clearly better."""
    data, truth = sample
    t = data.classes.get_indexer(truth.reindex(data.item_ids))
    V = vote_counts(data)
    top = V == V.max(axis=1, keepdims=True)
    mv = float((top[np.arange(data.n_items), t] / top.sum(axis=1)).mean())
    assert 0.75 <= mv <= 0.85
    crowdkit = pytest.importorskip("crowdkit.aggregation")
    ds = crowdkit.DawidSkene(n_iter=50).fit_predict(data.to_frame())
    ds_acc = float((ds.reindex(data.item_ids).to_numpy() == truth.reindex(data.item_ids).to_numpy()).mean())
    assert ds_acc > mv + 0.05
