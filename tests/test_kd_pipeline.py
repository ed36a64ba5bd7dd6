"""One pipeline (CLI = dashboard = benchmark), the recommended model, and the annot-mix / GeoCrowdNet peers,
on tiny simulated crowds (CPU, few epochs)."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from kdcrowd_core.cli import main
from kdcrowd_core.kd import KDConfig, KDCrowd, KDResult, TEACHERS
from kdcrowd_core.kd.pipeline import hold_out_gold, leave_out_items, train_kd
from kdcrowd_core.kd.recommend import DEFAULT_CRITERION, choose, hold_out_answers
from kdcrowd_core.simulate import simulate_crowd


@pytest.fixture(scope="module")
def sim():
    s = simulate_crowd(n_items=240, n_classes=3, n_features=6, n_workers=15, answers_per_item=(2, 4),
                       n_test=120, overlap=1.0, seed=5)
    return s, dataclasses.replace(s.data, gold=s.truth.copy())


def tiny(**kw) -> KDConfig:
    base = dict(epochs_teacher=3, epochs_student=3, epochs_stage2=2, cross_fit_folds=0, rounds=1, hidden=16,
                batch_size=128, seed=0, device="cpu")
    base.update(kw)
    return KDConfig(**base)


def test_hold_out_gold_is_reproducible_and_leaves_training(sim):
    _, data = sim
    tr, (Xv, yv), ids = hold_out_gold(data, 40, seed=3)
    tr2, (Xv2, _), ids2 = hold_out_gold(data, 40, seed=3)
    assert len(ids) == 40 and list(ids) == list(ids2) and np.array_equal(Xv, Xv2)
    assert tr.n_items == data.n_items - 40 and not tr.item_ids.isin(ids).any()
    assert tr.n_workers == data.n_workers            # every worker kept: codes unchanged
    pos = data.item_ids.get_indexer(ids)
    assert np.array_equal(yv, data.gold[pos]) and np.array_equal(Xv, data.features[pos])
    _, (_, y_share), _ = hold_out_gold(data, 0.25, seed=3)
    assert len(y_share) == 60
    left, n = leave_out_items(data, list(ids[:5]) + ["not-an-item"])
    assert n == 5 and left.n_items == data.n_items - 5


def test_hold_out_answers_keeps_an_answer_per_item(sim):
    _, data = sim
    tr, held = hold_out_answers(data, 0.1, seed=0)
    assert len(held[0]) == round(0.1 * data.n_answers)
    assert tr.n_answers + len(held[0]) == data.n_answers
    assert np.all(np.bincount(tr.item, minlength=data.n_items) >= 1)     # no item lost its last answer
    assert len(np.unique(held[0])) == len(held[0])                       # at most one answer per item
    assert hold_out_answers(data, 0.0, 0)[1] is None


def test_choose_says_when_the_student_did_not_beat_the_teacher():
    final, rec = choose({"teacher": 0.80, "student": 0.78, "stage2": 0.81}, "validation accuracy")
    assert final == "stage2" and rec["criterion"] == "validation accuracy"
    assert "the student did not beat the teacher" in rec["note"].lower()
    final, rec = choose({"teacher": 0.80, "student": 0.78, "stage2": 0.79}, "validation accuracy")
    assert final == "teacher" and "teacher is recommended" in rec["note"]
    final, _ = choose({"teacher": 0.8, "student": 0.8, "stage2": 0.8}, "validation accuracy")
    assert final == "stage2"                                            # ties: the pipeline's last output
    final, rec = choose({}, "none")
    assert final == "stage2" and rec["criterion"] == DEFAULT_CRITERION


def test_recommended_model_with_and_without_validation(sim, tmp_path):
    s, data = sim
    valid = (s.test_features[:60], s.test_truth[:60])
    test = (s.test_features[60:], s.test_truth[60:], None)
    tr = train_kd(data, tiny(), valid=valid, test=test)
    r = tr.result_
    assert r.final_model["criterion"] == "validation accuracy"
    assert r.valid_accuracy[r.final] == max(r.valid_accuracy.values())
    assert r.final_model["test_accuracy"] == r.test_accuracy[r.final]
    assert np.allclose(tr.predict_proba(s.test_features[:5], model="final"),
                       tr.predict_proba(s.test_features[:5], model=r.final))
    # without validation data: a share of the answers is held out and scores the three classifiers
    r2 = train_kd(data, tiny(select_holdout=0.1), test=test).result_
    assert r2.final_model["criterion"] == "held-out answer likelihood"
    assert r2.final_model["heldout_answers"] == round(0.1 * data.n_answers)
    sc = r2.final_model["scores"]
    assert set(sc) == {"teacher", "student", "stage2"} and sc[r2.final] == max(sc.values())
    r3 = train_kd(data, tiny(), test=test).result_          # the default: no answer held out, stage 2
    assert r3.final == "stage2" and r3.final_model["criterion"] == DEFAULT_CRITERION and r3.final_model["note"]
    r.save(tmp_path / "run")
    back = KDResult.load(tmp_path / "run")
    assert back.final == r.final and back.final_model["note"] == r.final_model["note"]
    assert back.summary()["final"] == r.final


def test_train_kd_is_kdcrowd_fit(sim):
    """The pipeline function is the trainer: same seed, same numbers."""
    s, data = sim
    a = train_kd(data, tiny(), test=(s.test_features, s.test_truth, None)).result_
    b = KDCrowd(tiny()).fit(data, test=(s.test_features, s.test_truth, None))
    for k in ("teacher", "student", "stage2"):
        assert np.allclose(a.test_probas[k], b.test_probas[k])


def test_cli_valid_from_gold_matches_the_pipeline(capsys, tmp_path):
    """`kdcrowd train --valid-from-gold N` = hold_out_gold + train_kd (the benchmark's Music protocol)."""
    d = tmp_path / "sim"
    assert main(["-q", "simulate", "--items", "200", "--classes", "3", "--workers", "12", "--features", "5",
                 "--gold-fraction", "1.0", "--test", "60", "--seed", "2", "-o", str(d)]) == 0
    capsys.readouterr()
    code = main(["-q", "train", str(d / "answers.csv"), "--features", str(d / "features.csv"), "--gold",
                 str(d / "gold.csv"), "--valid-from-gold", "30", "--test-features", str(d / "test_features.csv"),
                 "--test-gold", str(d / "test_gold.csv"), "--epochs", "2", "--device", "cpu", "--seed", "4",
                 "--out", str(tmp_path / "run")])
    assert code == 0, capsys.readouterr().err
    s = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert s["validation_items_left_out_of_training"] == 30
    assert s["final"] in ("teacher", "student", "stage2") and s["final_model"]["criterion"] == "validation accuracy"
    from kdcrowd_core.io import load_crowd
    from kdcrowd_core.kd.pipeline import read_split
    data = load_crowd(str(d / "answers.csv"), gold=str(d / "gold.csv"), features=str(d / "features.csv"))
    tr_data, valid, _ = hold_out_gold(data, 30, 4)
    test = read_split(str(d / "test_features.csv"), str(d / "test_gold.csv"), data.classes, "test")
    r = train_kd(tr_data, KDConfig(epochs_teacher=2, epochs_student=2, epochs_stage2=2, device="cpu", seed=4),
                 valid=valid, test=test).result_
    assert r.test_accuracy == pytest.approx(s["test_accuracy"])
    assert r.final == s["final"]
    code = main(["-q", "train", str(d / "answers.csv"), "--features", str(d / "features.csv"),
                 "--valid-from-gold", "30", "--out", str(tmp_path / "bad")])
    assert code == 2 and "--valid-from-gold" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["annot-mix", "geocrowdnet-f"])
def test_peer_crowd_models_learn(sim, name):
    """The peers are registered teachers; trained alone they beat a barely trained classifier on test items."""
    s, data = sim
    assert name in TEACHERS
    test = (s.test_features, s.test_truth, None)
    r = KDCrowd(tiny(teacher=name, epochs_teacher=25, epochs_student=1, epochs_stage2=1, select_holdout=0.0,
                     lr_transition=1e-3)).fit(data, test=test)
    weak = KDCrowd(tiny(teacher=name, epochs_teacher=1, lr=1e-5, epochs_student=1, epochs_stage2=1,
                        select_holdout=0.0)).fit(data, test=test)
    assert r.test_accuracy["teacher"] > weak.test_accuracy["teacher"] + 0.05
    T = r.worker_matrices["teacher"]
    assert T.shape == (data.n_workers, 3, 3) and np.allclose(T.sum(2), 1.0, atol=1e-4)


def test_annot_mix_mixes_answer_triples():
    """annot-mix's batch loss mixes inputs, annotators and answers: with alpha = 0 it is the plain answer NLL."""
    from kdcrowd_core.models import build_classifier, build_crowd_model
    from kdcrowd_core.losses import crowd_nll
    torch.manual_seed(0)
    head = build_classifier("mlp", 4, 3, hidden=8, dropout=0.0)
    m = build_crowd_model("annot-mix", head, 5, 3, mix_alpha=0.0)
    x = torch.randn(6, 4)
    a_local, a_w, a_l = torch.tensor([0, 1, 2, 3, 4, 5, 0]), torch.tensor([0, 1, 2, 3, 4, 0, 1]), \
        torch.tensor([0, 1, 2, 0, 1, 2, 2])
    logits = m(x)
    plain = crowd_nll(m.answer_log_probs(torch.softmax(logits, 1), a_local, a_w, m.item_embedding(x)), a_l)
    assert float(m.batch_loss(x, logits, a_local, a_w, a_l).detach()) == pytest.approx(float(plain.detach()), rel=1e-5)
    m.mix_alpha = 1.0
    assert float(m.batch_loss(x, logits, a_local, a_w, a_l).detach()) != pytest.approx(float(plain.detach()), rel=1e-5)
