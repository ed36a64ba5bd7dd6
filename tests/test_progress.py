"""Training progress: one labelled bar per stage, fold and round (kdcrowd_core.kd.progress)."""
from __future__ import annotations

import io

from kdcrowd_core.kd import progress


def _ev(stage, epoch, n, message, rnd=1, overall=0.5, elapsed=10.0):
    return {"stage": stage, "epoch": epoch, "n_epochs": n, "message": message, "round": rnd, "loss": 0.5,
            "train_accuracy": None, "valid_accuracy": None, "overall_progress": overall, "elapsed": elapsed}


EVENTS = ([_ev("mv", 1, 1, "majority vote"), _ev("ds", 1, 1, "Dawid-Skene")]
          + [_ev("teacher", e, 3, "teacher") for e in (1, 2, 3)]
          + [_ev("teacher", e, 3, f"out-of-fold teacher {f}/2") for f in (1, 2) for e in (1, 2, 3)]
          + [_ev("student", e, 3, "student (robust=none)") for e in (1, 2, 3)]
          + [_ev("student", 1, 1, "student: kept robust=none")]
          + [_ev("teacher", e, 3, f"next-round teacher {f}/2", rnd=2) for f in (1, 2) for e in (1, 2, 3)]
          + [_ev("student", e, 3, "student (robust=none)", rnd=2) for e in (1, 2)]
          + [_ev("baseline-mv", 1, 3, "student (robust=none)", rnd=2)])


def test_one_bar_per_fold_and_round():
    bars = progress.bars(EVENTS)
    assert list(bars) == ["majority vote", "Dawid-Skene", "round 1 · teacher", "round 1 · out-of-fold teacher 1/2",
                          "round 1 · out-of-fold teacher 2/2", "round 1 · student (robust=none)",
                          "round 2 · next-round teacher 1/2", "round 2 · next-round teacher 2/2",
                          "round 2 · student (robust=none)", "baseline: classifier on MV labels"]
    assert all(b["done"] for b in list(bars.values())[:-1])
    last = bars["baseline: classifier on MV labels"]
    assert not last["done"] and abs(last["fraction"] - 1 / 3) < 1e-9
    assert all(b["done"] and b["fraction"] == 1.0 for b in progress.bars(EVENTS, finished=True).values())
    assert progress.describe(bars["round 1 · teacher"]).startswith("epoch 3/3 · loss 0.5000")


def test_eta_and_cli_bars():
    assert progress.eta_seconds(10.0, 0.25) == 30.0
    assert progress.eta_seconds(10.0, 1.0) is None and progress.eta_seconds(1.0, 0.0) is None
    out = io.StringIO()
    p = progress.CliProgress(rounds=2, file=out)
    for ev in EVENTS:
        p(ev)
    p.close()
    assert list(p.bars) == list(progress.bars(EVENTS))
    text = out.getvalue()
    assert "round 2 · next-round teacher 2/2" in text and "student: kept robust=none" in text
    assert "run_eta=10s" in text                                   # 10 s elapsed at 50 %
