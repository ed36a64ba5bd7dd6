"""Item quality and relabel-next, measured: simulated crowds and the real crowds against their gold.

1. **Finding wrong labels.**  For the default method's consensus labels, the AUROC of each score for
   telling wrong labels from right ones (1 = perfect, 0.5 = chance): kdcrowd's quality score, vote
   agreement, Dawid-Skene's probability of the consensus label, and the default method's confidence
   (gold labels never enter inference); simulated crowds
   at ``--sim-seeds`` seeds (two harder settings, sims D and E, only here).  Also the calibration of the quality
   score (expected calibration error over 10 bins, and mean quality vs. accuracy): label-free (with the fitted
   over-dispersion ``rho`` and the tempering ``tau`` chosen on refits without held-out answers; with
   independent answers, ``rho = 0``; and "before": ``rho`` read off the soft labels and ``tau`` chosen
   in-sample, as until issue #9 item 2), and calibrated on half of the gold items then scored on the other half.
2. **Relabel next.**  A budget of B items (10 % of the eligible ones) each get ONE more answer; the
   consensus is re-inferred and the accuracy gained per extra answer compared across the item
   choices: relabel-next, lowest quality, random, lowest agreement (ties at random).  Every policy reveals
   exactly B answers, and the answer an item would get is fixed before any policy chooses (the same for
   every policy).  Simulated crowds draw it from an activity-weighted worker new to the item, with the
   simulator's true matrix.  Real crowds (dog, face, LabelMe, Music) start from 2 random answers per item
   and reveal the next of the item's held-back real answers (in a random order fixed per repeat; only items
   with a held-back answer are eligible, for every policy alike).  Per repeat the policies are paired (same
   start, same answers): the table gives the mean gain per answer and the mean paired difference with
   relabel-next with a 95 % interval (mean ± 1.96 standard errors over the repeats).  The real crowds'
   repeats use seeds 100, 101, ...: seeds 0-19 were used to choose the policy's settings.

    python benchmarks/quality.py [--repeats 5] [--real-repeats 60] [--sim-seeds 3] [--quick]

Writes docs/benchmarks_quality.md.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kdcrowd_core import quality  # noqa: E402
from kdcrowd_core.data import CrowdData  # noqa: E402
from kdcrowd_core.inference import DEFAULT_METHOD, get_method  # noqa: E402
from kdcrowd_core.metrics import vote_counts  # noqa: E402
from kdcrowd_core.simulate import simulate_crowd  # noqa: E402

OUT = ROOT / "docs" / "benchmarks_quality.md"

#: Harder simulated crowds for the calibration columns only (workers perceive an item's distractor class
#: with probability ``instance_noise * difficulty``: they err together on hard items).
CALIB_SIMS = {
    "sim D (4 classes, 3-7 answers, instance noise 1.0)": dict(n_items=2000, n_classes=4, n_workers=40,
                                                               answers_per_item=(3, 7), instance_noise=1.0),
    "sim E (8 classes, 2-3 answers, instance noise 0.8)": dict(n_items=2000, n_classes=8, n_workers=60,
                                                               answers_per_item=(2, 3), instance_noise=0.8),
}


def datasets_dir() -> Path:
    return Path(os.environ.get("KDCROWD_DATA", ROOT.parent / "shared" / "datasets"))


# ------------------------------------------------------------------ data
def real_crowds() -> dict[str, tuple[CrowdData, np.ndarray]]:
    """name -> (answers, truth codes per item (-1 unknown))."""
    d = datasets_dir()
    out = {}
    from kdcrowd_core.io import read_answers, read_gold
    for nm in ("dog", "face"):
        p = d / "truth_inference" / nm
        if (p / "answer.csv").is_file():
            data = read_answers(p / "answer.csv")
            gold = data.with_gold(read_gold(p / "truth.csv"), allow_unknown_items=True).gold
            out[nm] = (data, gold)
    p = d / "labelme" / "answers.txt"
    if p.is_file():
        a = np.loadtxt(p)
        z = np.loadtxt(d / "labelme" / "LabelMe_Z_train.txt").astype(int)
        ii, ww = np.nonzero(a >= 0)
        names = ["highway", "insidecity", "tallbuilding", "street", "forest", "coast", "mountain", "opencountry"]
        out["LabelMe"] = (CrowdData.from_arrays(ii, ww, a[ii, ww].astype(int), n_items=a.shape[0],
                                                n_workers=a.shape[1], classes=names), z)
    p = d / "music_genre" / "mturk_answers.csv"
    if p.is_file():
        mu = pd.read_csv(p)
        data = CrowdData.from_frame(mu, item="Input.song", worker="WorkerID", label="Answer.pred_label")
        tr = mu.groupby("Input.song")["Input.true_label"].first().reindex(data.item_ids).astype(str)
        out["Music"] = (data, data.classes.get_indexer(tr))
    return out


SIMS = {
    "sim A (5 classes, 1-5 answers, instance noise)": dict(n_items=2000, n_classes=5, n_workers=50,
                                                           answers_per_item=(1, 5), instance_noise=0.3),
    "sim B (8 classes, 2-6 answers)": dict(n_items=2000, n_classes=8, n_workers=60, answers_per_item=(2, 6)),
    "sim C (3 classes, 3 answers, instance noise)": dict(n_items=2000, n_classes=3, n_workers=20,
                                                         answers_per_item=(3, 3), instance_noise=0.5),
}


# ------------------------------------------------------------------ metrics
def auroc(score_wrong: np.ndarray, wrong: np.ndarray) -> float:
    """AUROC (ties count half) of ``score_wrong`` (higher = more likely wrong)."""
    from scipy.stats import rankdata
    r = rankdata(score_wrong)
    n1 = int(wrong.sum())
    n0 = len(wrong) - n1
    if n1 == 0 or n0 == 0:
        return float("nan")
    return float((r[wrong].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def ece(p: np.ndarray, right: np.ndarray, bins: int = 10) -> float:
    idx = np.clip((p * bins).astype(int), 0, bins - 1)
    n = np.bincount(idx, minlength=bins)
    gap = np.abs(np.bincount(idx, weights=p, minlength=bins) - np.bincount(idx, weights=right, minlength=bins))
    return float(gap.sum() / max(n.sum(), 1))


def fit_default(data: CrowdData) -> np.ndarray:
    return get_method(DEFAULT_METHOD, use_gold=False).fit(data).proba_array_


def finding_wrong(name: str, data: CrowdData, truth: np.ndarray, seed: int = 0) -> dict:
    q0 = fit_default(data)
    cons = q0.argmax(1)
    m = truth >= 0
    wrong = cons[m] != truth[m]
    # plain Dawid-Skene's confidence in the same consensus labels (its probability of them)
    ds = get_method("dawid_skene", use_gold=False).fit(data).proba_array_
    ds = np.take_along_axis(ds, cons[:, None], 1)
    bare = CrowdData.from_arrays(data.item, data.worker, data.label, item_ids=data.item_ids,
                                 worker_ids=data.worker_ids, classes=data.classes, validate=False)
    sc = quality.quality_scores(bare, q0)                    # no gold: label-free calibration
    sc_ind = quality.quality_scores(bare, q0, overdispersion=0.0)
    # the label-free calibration before issue #9 item 2: rho read off the soft labels, tau chosen in-sample
    sc_before = quality.quality_scores(bare, q0, heldout_refit=False,
                                       overdispersion=quality.answer_overdispersion(bare, q0, refit=False)[0])
    C = vote_counts(data)
    n = C.sum(1)
    agree = C[np.arange(len(C)), cons] / np.maximum(n, 1)
    # gold calibration: fit on half of the gold items, score the other half
    known = np.flatnonzero(m)
    half = np.random.default_rng(seed).permutation(known.size) % 2 == 0
    g = np.full(data.n_items, -1)
    g[known[half]] = truth[known[half]]
    with_half = CrowdData.from_arrays(data.item, data.worker, data.label, item_ids=data.item_ids,
                                      worker_ids=data.worker_ids, classes=data.classes, gold=g, validate=False)
    sc_g = quality.quality_scores(with_half, q0)
    other = known[~half]
    right_other = (cons[other] == truth[other]).astype(float)
    return {"crowd": name, "items with truth": int(m.sum()), "consensus accuracy": 1 - wrong.mean(),
            "AUROC quality": auroc(-sc.quality[m], wrong),
            "AUROC quality, fixed ranking (before)": auroc(-sc_before.quality[m], wrong),
            "w": sc.rank_weight, "strength": sc.rank_strength,
            "AUROC agreement": auroc(-agree[m], wrong),
            "AUROC DS confidence": auroc(-ds.max(1)[m], wrong),
            "AUROC method confidence": auroc(-q0.max(1)[m], wrong),
            "mean quality (label-free)": float(sc.quality[m].mean()),
            "rho": sc.posterior.overdispersion, "tau": sc.posterior.tau,
            "ECE label-free": ece(sc.quality[m], (~wrong).astype(float)),
            "ECE label-free before": ece(sc_before.quality[m], (~wrong).astype(float)),
            "ECE label-free, rho = 0": ece(sc_ind.quality[m], (~wrong).astype(float)),
            "ECE gold-calibrated (held-out half)": ece(sc_g.quality[other], right_other)}


def with_features(name: str, data: CrowdData, truth: np.ndarray, X: np.ndarray) -> dict:
    """AUROC of the quality score with and without the out-of-fold classifier on the item features."""
    q0 = fit_default(data)
    wrong = q0.argmax(1) != truth
    P = quality.oof_classifier_proba(X, q0)
    sc = quality.quality_scores(data, q0, P)
    sc0 = quality.quality_scores(data, q0)
    return {"crowd": name, "out-of-fold classifier accuracy": float((P.argmax(1) == truth).mean()),
            "AUROC quality (answers only)": auroc(-sc0.quality, wrong),
            "AUROC quality (+ features)": auroc(-sc.quality, wrong),
            "AUROC method confidence": auroc(-q0.max(1), wrong),
            "model weight chosen": sc.posterior.weight}


def feature_crowds(real: dict) -> dict[str, tuple[CrowdData, np.ndarray, np.ndarray]]:
    d = datasets_dir()
    out = {}
    s = simulate_crowd(n_items=2000, n_classes=5, n_workers=50, answers_per_item=(1, 5), instance_noise=0.3,
                       n_features=16, gold_fraction=0.0, seed=7)
    out["sim A (16 features)"] = (s.data, s.truth, s.data.features)
    if "LabelMe" in real:
        out["LabelMe (VGG16, 512-d)"] = (*real["LabelMe"], np.load(d / "labelme" / "LabelMe_VGG_avg_train.npy"))
    if "Music" in real:
        mu, t = real["Music"]
        g = pd.read_csv(d / "music_genre" / "music_genre_gold.csv").set_index("id")
        X = g.reindex(mu.item_ids)[[c for c in g.columns if c.startswith("feature")]].to_numpy(np.float32)
        out["Music (124 audio features)"] = (mu, t, X)
    return out


# ------------------------------------------------------------------ relabel
def choose(strategy: str, data: CrowdData, q0: np.ndarray, budget: int, eligible: np.ndarray,
           rng: np.random.Generator, scores: quality.QualityScores | None = None) -> np.ndarray:
    """The ``budget`` items a policy picks among the ``eligible`` ones (``scores``: the start's quality scores,
    computed once per repeat for the two policies that read them)."""
    el = np.flatnonzero(eligible)
    if strategy == "random":
        return rng.choice(el, size=budget, replace=False)
    if strategy == "lowest agreement":
        C = vote_counts(data)
        n = C.sum(1)
        agree = C[np.arange(len(C)), q0.argmax(1)] / np.maximum(n, 1)
        order = np.lexsort((rng.random(el.size), agree[el]))
        return el[order[:budget]]
    if strategy == "lowest quality":
        sc = scores or quality.quality_scores(data, q0)
        order = np.lexsort((rng.random(el.size), sc.rank_score[el]))
        return el[order[:budget]]
    t = quality.relabel_next(data, q0, budget, candidates=eligible, exclude_gold=False, scores=scores)
    return data.item_ids.get_indexer(t.index)


def sim_relabel(name: str, kw: dict, repeats: int, strategies: list[str]) -> list[dict]:
    rows = []
    for rep in range(repeats):
        s = simulate_crowd(n_features=4, gold_fraction=0.0, seed=100 + rep, **kw)
        d = s.data
        q0 = fit_default(d)
        acc0 = float((q0.argmax(1) == s.truth).mean())
        budget = d.n_items // 10
        act = d.answers_per_worker().astype(float)
        # the answer each item would get next, drawn once (the same whichever policy picks the item)
        rng = np.random.default_rng(1000 + rep)
        seen = pd.Series(d.worker).groupby(d.item).agg(set)
        next_worker = np.empty(d.n_items, dtype=np.int64)
        next_label = np.empty(d.n_items, dtype=np.int64)
        for i in range(d.n_items):
            p = act.copy()
            p[list(seen.get(i, set()))] = 0
            next_worker[i] = rng.choice(d.n_workers, p=p / p.sum())
            next_label[i] = rng.choice(d.n_classes, p=s.true_matrices[next_worker[i], s.truth[i]])
        sc = quality.quality_scores(d, q0)
        for strat in strategies:
            items = choose(strat, d, q0, budget, np.ones(d.n_items, bool), np.random.default_rng(rep), sc)
            workers, lab = next_worker[items], next_label[items]
            d2 = CrowdData.from_arrays(np.r_[d.item, items], np.r_[d.worker, workers], np.r_[d.label, lab],
                                       n_items=d.n_items, n_workers=d.n_workers, n_classes=d.n_classes,
                                       validate=False)
            acc = float((fit_default(d2).argmax(1) == s.truth).mean())
            rows.append({"crowd": name, "strategy": strat, "repeat": rep, "budget": budget,
                         "accuracy before": acc0, "gain per answer": (acc - acc0) * d.n_items / budget})
    return rows


def real_relabel(name: str, data: CrowdData, truth: np.ndarray, repeats: int, strategies: list[str],
                 start: int = 2, first_seed: int = 100) -> list[dict]:
    rows = []
    m = truth >= 0
    for rep in range(first_seed, first_seed + repeats):
        rng = np.random.default_rng(rep)
        order = rng.permutation(data.n_answers)
        rank = np.empty(data.n_answers, dtype=np.int64)
        # position of each answer among its item's answers, in a random order
        srt = order[np.argsort(data.item[order], kind="stable")]
        first = np.r_[0, np.flatnonzero(np.diff(data.item[srt])) + 1]
        pos = np.arange(srt.size) - np.repeat(first, np.diff(np.r_[first, srt.size]))
        rank[srt] = pos
        keep = rank < start
        d = CrowdData.from_arrays(data.item[keep], data.worker[keep], data.label[keep], item_ids=data.item_ids,
                                  worker_ids=data.worker_ids, classes=data.classes, validate=False)
        eligible = np.bincount(data.item[~keep], minlength=data.n_items) > 0
        budget = max(1, int(eligible.sum()) // 10)
        q0 = fit_default(d)
        acc0 = float((q0.argmax(1)[m] == truth[m]).mean())
        nxt = rank == start                                        # the answer revealed for each item
        reveal = pd.Series(np.flatnonzero(nxt), index=data.item[nxt])
        sc = quality.quality_scores(d, q0)
        for strat in strategies:
            items = choose(strat, d, q0, budget, eligible, np.random.default_rng(rep + 7), sc)
            add = reveal.reindex(items).to_numpy()
            sel = np.r_[np.flatnonzero(keep), add]
            d2 = CrowdData.from_arrays(data.item[sel], data.worker[sel], data.label[sel], item_ids=data.item_ids,
                                       worker_ids=data.worker_ids, classes=data.classes, validate=False)
            acc = float((fit_default(d2).argmax(1)[m] == truth[m]).mean())
            rows.append({"crowd": name, "strategy": strat, "repeat": rep, "budget": budget,
                         "accuracy before": acc0, "gain per answer": (acc - acc0) * int(m.sum()) / budget})
    return rows


def relabel_summary(rel: pd.DataFrame, ours: str = "relabel-next") -> pd.DataFrame:
    """Per crowd and policy: mean gain per answer with its 95 % interval, and the paired difference
    ``ours - policy`` (same repeats) with its 95 % interval (mean ± 1.96 standard errors)."""
    rows = []
    for (crowd, strat), g in rel.groupby(["crowd", "strategy"], sort=False):
        mine = rel[(rel["crowd"] == crowd) & (rel["strategy"] == ours)].set_index("repeat")["gain per answer"]
        x = g.set_index("repeat")["gain per answer"]
        d = (mine - x).dropna()
        n = len(x)
        half = 1.96 * x.std(ddof=1) / np.sqrt(n) if n > 1 else float("nan")
        dhalf = 1.96 * d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else float("nan")
        rows.append({"crowd": crowd, "strategy": strat, "repeats": n, "budget": int(g["budget"].iloc[0]),
                     "accuracy before": f"{g['accuracy before'].mean():.4f}",
                     "gain per answer [95% CI]": f"{x.mean():.3f} [{x.mean() - half:.3f}, {x.mean() + half:.3f}]",
                     f"{ours} minus this [95% CI]": "" if strat == ours else
                     f"{d.mean():+.3f} [{d.mean() - dhalf:+.3f}, {d.mean() + dhalf:+.3f}]",
                     f"repeats {ours} better / equal / worse": "" if strat == ours else
                     f"{int((d > 1e-12).sum())} / {int((d.abs() <= 1e-12).sum())} / {int((d < -1e-12).sum())}"})
    return pd.DataFrame(rows)


def to_markdown(df: pd.DataFrame, digits: int = 3) -> str:
    """A pipe table (no tabulate dependency)."""
    def cell(v):
        return f"{v:.{digits}f}" if isinstance(v, (float, np.floating)) else str(v)
    head = "| " + " | ".join(map(str, df.columns)) + " |"
    sep = "|" + "|".join("---" for _ in df.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, sep, *body])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5, help="repeats of the relabel test per simulated crowd")
    ap.add_argument("--real-repeats", type=int, default=60, help="repeats of the relabel test per real crowd")
    ap.add_argument("--sim-seeds", type=int, default=3, help="simulated crowds (seeds 7, 8, ...) per setting "
                                                            "for finding wrong labels")
    ap.add_argument("--quick", action="store_true", help="one simulated crowd, two repeats")
    args = ap.parse_args(argv)
    t0 = time.time()
    strategies = ["relabel-next", "lowest quality", "random", "lowest agreement"]
    sims = dict(list(SIMS.items())[:1]) if args.quick else SIMS
    repeats = 2 if args.quick else args.repeats
    real_repeats = 2 if args.quick else args.real_repeats
    seeds = 1 if args.quick else args.sim_seeds
    real = real_crowds()

    find = []
    for name, kw in {**sims, **({} if args.quick else CALIB_SIMS)}.items():
        for seed in range(7, 7 + seeds):
            s = simulate_crowd(n_features=4, gold_fraction=0.0, seed=seed, **kw)
            find.append(finding_wrong(f"{name}, seed {seed}", s.data, s.truth))
    for name, (data, truth) in real.items():
        find.append(finding_wrong(name, data, truth))
    find = pd.DataFrame(find)
    print(find.round(3).to_string(index=False))

    feats = pd.DataFrame([with_features(n, *v) for n, v in feature_crowds(real).items()])
    print(feats.round(3).to_string(index=False))

    rel = []
    for name, kw in sims.items():
        rel += sim_relabel(name, kw, repeats, strategies)
    for name in ("dog", "face", "LabelMe", "Music"):
        if name in real:
            rel += real_relabel(name, *real[name], real_repeats, strategies)
    rel = pd.DataFrame(rel)
    summary = relabel_summary(rel)
    print(summary.to_string(index=False))

    lines = ["# Item quality and relabel-next: measurements", "",
             f"`python benchmarks/quality.py{' --quick' if args.quick else ''} --repeats {repeats} "
             f"--real-repeats {real_repeats} --sim-seeds {seeds}` "
             f"({time.strftime('%Y-%m-%d')}, {time.time() - t0:.0f} s on this machine; default method "
             f"`{DEFAULT_METHOD}`, gold never used in inference). Protocol in the script's docstring.", "",
             "## Finding wrong consensus labels", "",
             "AUROC of each score for wrong vs right consensus labels (higher is better); calibration of the "
             "quality score (ECE: expected calibration error over 10 bins, lower is better). `rho`, `tau`: the "
             "label-free over-dispersion and tempering chosen; `w`, `strength`: the ranking's weight of the "
             "posteriors against vote agreement and the shrinkage of its third posterior, chosen on held-out "
             "answers (`quality.heldout_choice`); `AUROC quality, fixed ranking (before)`: the ranking before that "
             "choice (`w` = 0.95, no shrunk posterior); `ECE label-free before`: the label-free calibration "
             "before issue #9 item 2 (`rho` read off the soft labels, `tau` chosen in-sample), same crowds. Sims D "
             "and E (harder: workers err together on hard items) are in this table only.", "",
             to_markdown(find, 3), "",
             "## With item features: an out-of-fold classifier as second opinion (CROWDLAB)", "",
             "`kdcrowd items --features F`: a softmax regression trained on the other folds' items predicts each "
             "item; its weight next to the answers is chosen on held-out answers.", "",
             to_markdown(feats, 3), "",
             "## Relabel next: accuracy gained per extra answer", "",
             "Budget = 10 % of the eligible items, one extra answer each (the same number of answers for every "
             "policy; the answer an item gets is fixed before any policy chooses); `gain per answer` = items "
             "turned right per extra answer, mean over the repeats with its 95 % interval; the last column is "
             "the paired difference (same start, same answers) between relabel-next and the row's policy, and "
             "in how many repeats relabel-next gained more / as much / less. "
             f"Simulated crowds: {repeats} repeats; real crowds: {real_repeats} repeats (seeds 100 on; seeds "
             "0-19 were used to choose relabel-next's settings).", "",
             to_markdown(summary, 4), ""]
    OUT.write_text("\n".join(lines))
    print(f"-> {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
