"""``kdcrowd items``, ``kdcrowd relabel`` and the worker actions of ``kdcrowd workers``."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kdcrowd_core.cli import main
from kdcrowd_core.io import read_answers


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def simdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("sim")
    assert main(["-q", "simulate", "--items", "300", "--classes", "4", "--workers", "20", "--features", "8",
                 "--gold-fraction", "0.3", "-o", str(d)]) == 0
    return d


def _fake_run(tmp_path, data, classes=None, name="run"):
    """A saved KD-Crowd result for ``data``'s items (probabilities made up; no training needed)."""
    from kdcrowd_core.kd import KDConfig, KDResult
    rng = np.random.default_rng(0)
    N, K = data.n_items, data.n_classes
    probas = {m: rng.dirichlet(np.ones(K), size=N) for m in ("mv", "ds", "teacher", "student", "stage2")}
    res = KDResult(classes=pd.Index(classes if classes is not None else data.classes), item_ids=data.item_ids,
                   worker_ids=data.worker_ids, config=KDConfig(), device="cpu", probas=probas,
                   worker_matrices={})
    res.save(tmp_path / name / "model")
    return tmp_path / name


def test_items_without_and_with_run(capsys, simdir, tmp_path):
    out = tmp_path / "items.csv"
    code, text, _ = run(capsys, "-q", "items", simdir / "answers.csv", "--gold", simdir / "gold.csv", "-o", out)
    assert code == 0
    t = pd.read_csv(out)
    assert len(t) == 300 and t.columns[0] == "item"
    assert {"consensus", "quality", "agreement", "answers", "votes", "reason", "gold", "consensus_correct",
            "prob_class_0"} <= set(t.columns)
    assert (np.diff(t["quality"].to_numpy()) >= -1e-12).all()         # likely-wrong first
    code, text, _ = run(capsys, "items", simdir / "answers.csv", "--gold", simdir / "gold.csv", "-o", out,
                        "--no-class-probas")
    assert code == 0 and "95% interval" in text and not any(c.startswith("prob_") for c in pd.read_csv(out))
    data = read_answers(simdir / "answers.csv")
    rdir = _fake_run(tmp_path, data)
    code, _, err = run(capsys, "-q", "items", simdir / "answers.csv", "--gold", simdir / "gold.csv",
                       "--run", rdir, "-o", out)
    assert code == 0, err
    t = pd.read_csv(out)
    assert {"model_label", "model_confidence", "model_prob_consensus", "teacher", "student", "stage2",
            "fixed_student", "broke_student", "fixed_stage2", "broke_stage2", "model_prob_class_0"} <= set(t.columns)
    assert t["reason"].fillna("").str.contains("teacher and student disagree").any()


def test_items_bad_run_dirs(capsys, simdir, tmp_path):
    code, _, err = run(capsys, "items", simdir / "answers.csv", "--run", tmp_path / "nope", "-o", tmp_path / "x.csv")
    assert code == 2 and "does not exist" in err and "kdcrowd train --out" in err and "Traceback" not in err
    (tmp_path / "empty").mkdir()
    code, _, err = run(capsys, "items", simdir / "answers.csv", "--run", tmp_path / "empty", "-o", tmp_path / "x.csv")
    assert code == 2 and "no training run" in err
    data = read_answers(simdir / "answers.csv")
    other = _fake_run(tmp_path, data, classes=["a", "b", "c", "d"], name="other")
    code, _, err = run(capsys, "-q", "items", simdir / "answers.csv", "--run", other, "-o", tmp_path / "x.csv")
    assert code == 2 and "classes" in err and "run trained on these answers" in err


def test_relabel_task_list_budget_and_content(capsys, simdir, tmp_path):
    content = tmp_path / "content.csv"
    data = read_answers(simdir / "answers.csv")
    pd.DataFrame({"item": data.item_ids, "text": [f"text of {i}" for i in data.item_ids]}).to_csv(content,
                                                                                                 index=False)
    out = tmp_path / "next.csv"
    code, _, err = run(capsys, "-q", "relabel", simdir / "answers.csv", "--gold", simdir / "gold.csv",
                       "--budget", 25, "--content", content, "-o", out)
    assert code == 0, err
    t = pd.read_csv(out)
    assert list(t.columns) == ["item_id", "content", "current_label", "quality", "answers", "reason"]
    assert len(t) == 25 and (t["content"] == "text of " + t["item_id"]).all()
    gold = pd.read_csv(simdir / "gold.csv")
    assert not set(t["item_id"]) & set(gold.iloc[:, 0].astype(str))      # gold items are not sent again
    code, _, _ = run(capsys, "-q", "relabel", simdir / "answers.csv", "--budget", 5, "--details", "-o", out)
    det = pd.read_csv(out)
    assert code == 0 and list(det.columns[:4]) == ["item", "rank", "priority", "expected_gain"]
    assert (np.diff(det["priority"]) <= 1e-9).all()
    code, _, err = run(capsys, "relabel", simdir / "answers.csv", "--budget", 1000, "-o", out)
    assert code == 2 and "--budget at most 300" in err
    code, _, err = run(capsys, "relabel", simdir / "answers.csv", "--budget", 0, "-o", out)
    assert code == 2 and "--budget" in err


def test_workers_flags_lists_and_clamp_gold(capsys, simdir, tmp_path):
    w = tmp_path / "w.csv"
    code, _, _ = run(capsys, "-q", "workers", simdir / "answers.csv", "--gold", simdir / "gold.csv", "-o", w,
                     "--block-list", tmp_path / "block.csv", "--bonus-list", tmp_path / "bonus.csv")
    assert code == 0
    t = pd.read_csv(w, keep_default_na=False)
    assert len(t) == 20 and {"accuracy_low", "accuracy_high", "flags", "action", "gold_accuracy_low"} <= set(t)
    b = pd.read_csv(tmp_path / "block.csv")
    assert list(b.columns) == ["Worker ID", "UPDATE-BlockStatus", "BLOCK_REASON"]
    assert set(b["Worker ID"]) == set(t.loc[t["action"] == "block", "worker"])
    assert list(pd.read_csv(tmp_path / "bonus.csv").columns) == ["WorkerId", "AssignmentId", "BonusAmount", "Reason"]
    # thresholds change the flags
    code, _, _ = run(capsys, "-q", "workers", simdir / "answers.csv", "-o", w, "--min-answers", 100000)
    assert code == 0 and (pd.read_csv(w, keep_default_na=False)["action"] == "").all()
    code, _, _ = run(capsys, "-q", "workers", simdir / "answers.csv", "-o", w, "--min-answers", 0,
                     "--block-accuracy", 0.99, "--platform", "toloka", "--block-list", tmp_path / "tb.csv")
    assert code == 0 and (pd.read_csv(w)["action"] == "block").sum() > len(b)
    assert list(pd.read_csv(tmp_path / "tb.csv").columns) == ["user_id", "scope", "private_comment"]
    # gold is clamped only when asked: the estimates then move
    code, _, _ = run(capsys, "-q", "workers", simdir / "answers.csv", "--gold", simdir / "gold.csv", "-o",
                     tmp_path / "wc.csv", "--clamp-gold")
    assert code == 0
    clamped = pd.read_csv(tmp_path / "wc.csv")
    assert not np.allclose(clamped["method_accuracy"], t["method_accuracy"])


def test_predict_from_a_trained_run(capsys, simdir, tmp_path):
    """A real (tiny) training run, then `kdcrowd predict` on its test items; bad inputs give clear messages."""
    sim = tmp_path / "s"
    assert main(["-q", "simulate", "--items", "120", "--classes", "3", "--workers", "8", "--features", "6",
                 "--test", "40", "-o", str(sim)]) == 0
    run_dir = tmp_path / "run"
    code, _, err = run(capsys, "-q", "train", sim / "answers.csv", "--features", sim / "features.csv",
                       "--gold", sim / "gold.csv", "--clamp-gold", "--epochs", 2, "--out", run_dir)
    assert code == 0, err
    import json
    assert json.loads((run_dir / "summary.json").read_text())["config"]["use_gold"] is True   # asked: clamped
    out = tmp_path / "pred.csv"
    code, _, err = run(capsys, "-q", "predict", run_dir, "--features", sim / "test_features.csv", "-o", out)
    assert code == 0, err
    p = pd.read_csv(out)
    assert list(p.columns[:3]) == ["item", "label", "confidence"] and len(p) == 40
    probs = [c for c in p.columns if c.startswith("prob_")]
    np.testing.assert_allclose(p[probs].sum(axis=1), 1.0, atol=1e-5)
    assert (p["model"] == "stage2").all()
    # the same numbers as the trainer in memory
    from kdcrowd_core.io import read_features
    from kdcrowd_core.kd import KDCrowd
    X, _, _ = read_features(sim / "test_features.csv")
    np.testing.assert_allclose(KDCrowd.load(run_dir / "model").predict_proba(X, "stage2"), p[probs].to_numpy(),
                               atol=1e-6)
    code, _, _ = run(capsys, "-q", "predict", run_dir, "--features", sim / "test_features.csv", "--model",
                     "teacher", "-o", out)
    assert code == 0 and (pd.read_csv(out)["model"] == "teacher").all()
    # features of another run (other columns) / an unknown run folder
    code, _, err = run(capsys, "predict", run_dir, "--features", simdir / "features.csv", "-o", out)
    assert code == 2 and "8 columns but the run" in err and "trained on 6" in err and "--features" in err
    code, _, err = run(capsys, "predict", tmp_path / "nope", "--features", sim / "features.csv", "-o", out)
    assert code == 2 and "does not exist" in err


def test_items_with_features_uses_an_out_of_fold_classifier(capsys, simdir, tmp_path):
    out = tmp_path / "items.csv"
    code, text, err = run(capsys, "items", simdir / "answers.csv", "--features", simdir / "features.csv",
                          "--no-class-probas", "-o", out)
    assert code == 0, err
    assert "out-of-fold classifier on --features" in text
    t = pd.read_csv(out)
    assert {"model_label", "model_confidence", "model_prob_consensus"} <= set(t.columns)
    assert (t["model_label"] == t["consensus"]).mean() > 0.5          # the features carry the classes


def test_oof_classifier_never_sees_the_item():
    """Labels that are pure noise given the features: out-of-fold predictions can't reproduce them."""
    from kdcrowd_core.quality import oof_classifier_proba
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 30)).astype(np.float32)
    noise = np.eye(2)[rng.integers(0, 2, 200)]
    P = oof_classifier_proba(X, noise, epochs=300)
    assert P.shape == (200, 2) and np.allclose(P.sum(1), 1)
    assert (P.argmax(1) == noise.argmax(1)).mean() < 0.65              # in-sample fitting would reach ~1.0
    y = (X[:, 0] > 0).astype(int)                                     # a learnable rule is learnt
    assert (oof_classifier_proba(X, np.eye(2)[y]).argmax(1) == y).mean() > 0.85


def test_items_run_uses_the_trainers_out_of_fold_probabilities(capsys, tmp_path):
    """`kdcrowd train` saves each item's probabilities from the cross-fit fold that never saw its answers
    (``oof_probas`` in arrays.npz, pickle-free); `kdcrowd items --run` takes them as the second opinion."""
    sim = tmp_path / "s"
    assert main(["-q", "simulate", "--items", "120", "--classes", "3", "--workers", "8", "--features", "6",
                 "-o", str(sim)]) == 0
    run_dir = tmp_path / "run"
    code, _, err = run(capsys, "-q", "train", sim / "answers.csv", "--features", sim / "features.csv",
                       "--epochs", 2, "--out", run_dir)
    assert code == 0, err
    z = np.load(run_dir / "model" / "arrays.npz", allow_pickle=False)
    P = z["oof_probas"]
    assert P.shape == (120, 3) and np.allclose(P.sum(1), 1.0, atol=1e-6)
    from kdcrowd_core.kd import KDResult
    res = KDResult.load(run_dir / "model")
    np.testing.assert_allclose(res.oof_probas, P)
    assert not np.allclose(P, res.probas["student"])          # not the in-sample student
    out = tmp_path / "items.csv"
    code, text, err = run(capsys, "items", sim / "answers.csv", "--run", run_dir, "-o", out)
    assert code == 0, err
    assert "second opinion: out-of-fold classifier (the run's cross-fit teacher folds)" in text
    # a run without cross-fitting has none: the student (in-sample) is used, and said so
    res.oof_probas = None
    res.save(tmp_path / "nofold" / "model")
    code, text, err = run(capsys, "items", sim / "answers.csv", "--run", tmp_path / "nofold", "-o", out)
    assert code == 0, err
    assert "student classifier (in-sample)" in text
