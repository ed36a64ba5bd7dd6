"""Truth-inference accuracy: every kdcrowd method against Crowd-Kit's, same data, same run.

Datasets: ../shared/datasets (dog, face, LabelMe train answers, Music) when present, and
simulated crowds (with and without instance-dependent noise).  Used to choose the default
method (kdcrowd_core.inference.DEFAULT_METHOD).

    python benchmarks/inference_accuracy.py

Writes docs/benchmarks_inference_accuracy.md (merged into docs/benchmarks.md).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kdcrowd_core.inference import DEFAULT_METHOD, get_method  # noqa: E402
from kdcrowd_core.simulate import simulate_crowd  # noqa: E402

OURS = ["majority_vote", "dawid_skene", "one_coin_dawid_skene", "glad", "hierarchical_dawid_skene"]
#: the adaptive default must be within 0.5 pt of the best of these on every set
BASELINES = ["majority_vote", "dawid_skene", "one_coin_dawid_skene"]


def datasets_dir() -> Path:
    return Path(os.environ.get("KDCROWD_DATA", ROOT.parent / "shared" / "datasets"))


def load_real() -> dict[str, tuple[pd.DataFrame, pd.Series]]:
    """name -> (answers frame task/worker/label, truth Series task -> label)."""
    d = datasets_dir()
    out = {}
    if not d.is_dir():
        print(f"no real datasets at {d}: simulated crowds only")
        return out
    for name in ("dog", "face"):
        f = d / "truth_inference" / name
        a = pd.read_csv(f / "answer.csv").rename(columns={"question": "task", "answer": "label"})
        t = pd.read_csv(f / "truth.csv").set_index("question")["truth"]
        out[name] = (a[["task", "worker", "label"]], t)
    ans = np.loadtxt(d / "labelme" / "answers.txt", dtype=np.int64)
    i, w = np.nonzero(ans >= 0)
    out["labelme"] = (pd.DataFrame({"task": i, "worker": w, "label": ans[i, w]}),
                      pd.Series(np.loadtxt(d / "labelme" / "LabelMe_Z_train.txt", dtype=np.int64)))
    m = pd.read_csv(d / "music_genre" / "mturk_answers.csv")
    out["music"] = (m.rename(columns={"Input.song": "task", "WorkerID": "worker", "Answer.pred_label": "label"})
                    [["task", "worker", "label"]],
                    m.groupby("Input.song")["Input.true_label"].first())
    return out


def load_sim() -> dict[str, tuple[pd.DataFrame, pd.Series]]:
    out = {}
    for name, kw in {"sim (mixed archetypes)": {},
                     "sim (instance noise 0.5)": {"instance_noise": 0.5},
                     "sim (many spammers)": {"archetypes": {"expert": 0.2, "novice": 0.3, "spammer": 0.3,
                                                            "one_answer_spammer": 0.1, "adversary": 0.1}}}.items():
        s = simulate_crowd(n_items=2000, n_classes=6, n_features=0, n_workers=60, answers_per_item=(2, 5),
                           seed=7, **kw)
        df = s.data.to_frame()
        out[name] = (df, pd.Series(s.data.classes.take(s.truth), index=s.data.item_ids))
    # sparse workers: many workers with a handful of answers each (uniform activity)
    for seed in (1, 2, 3, 4):
        for K, n_workers in ((4, 400), (8, 800)):
            s = simulate_crowd(n_items=2000, n_classes=K, n_features=0, n_workers=n_workers, answers_per_item=(1, 4),
                               worker_activity="uniform", seed=seed)
            out[f"sim sparse (K={K}, {n_workers} workers, seed {seed})"] = (
                s.data.to_frame(), pd.Series(s.data.classes.take(s.truth), index=s.data.item_ids))
    # very sparse: 10 classes, about 5 answers per worker, 1-3 answers per item
    for seed in (11, 12, 13):
        s = simulate_crowd(n_items=1500, n_classes=10, n_features=0, n_workers=600, answers_per_item=(1, 3),
                           worker_activity="uniform", seed=seed)
        out[f"sim very sparse (K=10, 600 workers, seed {seed})"] = (
            s.data.to_frame(), pd.Series(s.data.classes.take(s.truth), index=s.data.item_ids))
    return out


def acc(pred: pd.Series, truth: pd.Series) -> float:
    return float((pred.reindex(truth.index) == truth).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default=str(ROOT / "docs" / "benchmarks_inference_accuracy.md"))
    ap.add_argument("--no-crowdkit", action="store_true", help="our methods only (faster)")
    args = ap.parse_args()
    import crowdkit.aggregation as ck
    sets = {**load_real(), **load_sim()}
    ck_methods = {"MV": lambda: ck.MajorityVote(), "DS": lambda: ck.DawidSkene(n_iter=100),
                  "OneCoinDS": lambda: ck.OneCoinDawidSkene(n_iter=100), "GLAD": lambda: ck.GLAD(),
                  "MACE": lambda: ck.MACE(), "MMSR": lambda: ck.MMSR()}
    rows = []
    for name, (df, truth) in sets.items():
        row = {"dataset": name}
        for m in OURS:
            t0 = time.perf_counter()
            row[f"kdcrowd {m}"] = acc(get_method(m).fit_predict(df), truth)
            row[f"t {m}"] = time.perf_counter() - t0
        row["default - best of MV/DS/one-coin (pt)"] = 100 * (
            row[f"kdcrowd {DEFAULT_METHOD}"] - max(row[f"kdcrowd {b}"] for b in BASELINES))
        for m, make in ({} if args.no_crowdkit else ck_methods).items():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    t0 = time.perf_counter()
                    row[f"Crowd-Kit {m}"] = acc(make().fit_predict(df), truth)
                    row[f"ck t {m}"] = time.perf_counter() - t0
                except Exception as e:  # report, don't hide
                    row[f"Crowd-Kit {m}"] = float("nan")
                    print(f"Crowd-Kit {m} failed on {name}: {type(e).__name__}: {e}")
        rows.append(row)
        print(name, {k: round(v, 4) for k, v in row.items() if k != "dataset" and not k.startswith(("t ", "ck t"))},
              flush=True)
    tab = pd.DataFrame(rows).set_index("dataset")
    acc_cols = [c for c in tab.columns if not c.startswith(("t ", "ck t", "default - "))]
    gap_col = "default - best of MV/DS/one-coin (pt)"
    lines = ["## Truth-inference accuracy (benchmarks/inference_accuracy.py)", "",
             f"Fraction of items whose inferred label equals the truth. Default method: `{DEFAULT_METHOD}`. "
             "Crowd-Kit 1.4.2 with its defaults (DS/OneCoinDS n_iter=100). Simulated crowds: 2,000 items, "
             "6 classes, 60 workers, 2-5 answers per item, seed 7; sparse: 2,000 items, 1-4 answers per item, uniform worker "
             "activity (about 12 answers per worker at K=4, 6 at K=8); very sparse: 1,500 items, 1-3 answers per item, "
             "about 5 answers per worker.", "",
             "| dataset | " + " | ".join(c.replace("kdcrowd ", "ours ") for c in acc_cols) + f" | {gap_col} |",
             "|---|" + "---|" * (len(acc_cols) + 1)]
    for name, r in tab.iterrows():
        ck_acc = [r[c] for c in acc_cols if c.startswith("Crowd-Kit") and not np.isnan(r[c])]
        best = max(ck_acc) if ck_acc else float("inf")
        cells = []
        for c in acc_cols:
            v = r[c]
            s = "n/a" if np.isnan(v) else f"{v:.4f}"
            if c.startswith("kdcrowd") and v >= best - 1e-12:
                s = f"**{s}**"
            cells.append(s)
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {r[gap_col]:+.2f} |")
    lines += ["", "Bold: at least as accurate as the best Crowd-Kit method on that dataset.", ""]
    text = "\n".join(lines)
    print(text)
    Path(args.out).write_text(text)
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
