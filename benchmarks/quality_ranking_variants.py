"""Ranking likely-wrong consensus labels: kdcrowd's ranking (``quality.quality_scores``) against the fixed blend it
replaced and the alternatives measured on the way (EXPERIMENTAL, not adopted).

The fixed blend was ``0.95 * mean(P_method, P_DS)(consensus) + 0.05 * vote agreement``.  On sim E (8 classes,
2-3 answers, instance noise 0.8; ``benchmarks/quality.py``) its AUROC is below plain vote agreement's on seeds 7
and 8.  There 17-28 % of the consensus labels were given by none of the item's answers (inferred from learnt
worker confusions); they are right 11 % and 13 % of the time yet their posterior averages 0.56 and 0.49 (columns
"accuracy of those", "their posterior (mean)").  kdcrowd's ranking now adds a third posterior (worker matrices
shrunk by the strength that best predicts held-out answers) and chooses the weight against vote agreement on
held-out answers (``quality.heldout_choice``).  The other variants, all label-free (gold only scores them):

- ``blend chosen on held-out answers``: the adopted weight choice without the third posterior: the weight
  ``w`` of the posterior against vote agreement (0, 0.2, ..., 0.95) chosen on refits without one held-out answer per item (4 folds x 3 draws, items with
  two or more remaining answers): the AUROC of the score for "the held-out answer equals the refit's
  consensus", leaving 0.95 only when the gain is 1.64 bootstrap standard errors or more (the library's
  ``quality._choose_rank_weight``);
- ``+ one-coin``: 0.8 x the fixed blend + 0.2 x one-coin Dawid-Skene's probability of the consensus;
- ``bagged refits``: the fixed blend with the method's and Dawid-Skene's probabilities averaged over the
  same 12 refits (each item only in the refits that kept all its answers).

    python benchmarks/quality_ranking_variants.py [--seeds 7,8,9] [--out FILE.md]

Writes docs/benchmarks_quality_ranking_variants.md.  Needs ../shared/datasets for the real crowds (skipped,
with a note, when absent).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from quality import CALIB_SIMS, SIMS, auroc, real_crowds, to_markdown  # noqa: E402

from kdcrowd_core.data import CrowdData  # noqa: E402
from kdcrowd_core.inference import DEFAULT_METHOD, get_method  # noqa: E402
from kdcrowd_core.quality import (  # noqa: E402
    RANK_POSTERIOR_WEIGHT, _choose_rank_weight, heldout_splits, quality_scores)
from kdcrowd_core.simulate import simulate_crowd  # noqa: E402

OUT = ROOT / "docs" / "benchmarks_quality_ranking_variants.md"
FIXED_WEIGHT = RANK_POSTERIOR_WEIGHT          # the fixed blend's weight


def fit(name: str, data: CrowdData) -> np.ndarray:
    return get_method(name, use_gold=False).fit(data).proba_array_


def blend(p: np.ndarray, agree: np.ndarray, w: float) -> np.ndarray:
    return w * p + (1 - w) * agree + 1e-6 * p           # the posterior breaks ties


def refits(data: CrowdData, cons: np.ndarray, folds: int = 4, repeats: int = 3, seed: int = 0):
    """Held-out answers (posterior and agreement of the refit's consensus, whether the answer equals it,
    answers left) and the bagged probabilities of ``cons`` over the refits that kept an item's answers."""
    item, label = data.item, data.label
    N = data.n_items
    held_p, held_a, held_y, held_n = [], [], [], []
    bag, kept = np.zeros(N), np.zeros(N)
    rows = np.arange(N)
    for out, rest in heldout_splits(data, folds=folds, repeats=repeats, rng=np.random.default_rng(seed)):
        q, ds = fit(DEFAULT_METHOD, rest), fit("dawid_skene", rest)
        it = item[out]
        c = q[it].argmax(1)
        n_rest = rest.answers_per_item()
        votes = np.bincount(rest.item, weights=rest.label == q.argmax(1)[rest.item], minlength=N)
        held_p.append((q[it, c] + ds[it, c]) / 2)
        held_a.append(votes[it] / n_rest[it])
        held_y.append(label[out] == c)
        held_n.append(n_rest[it])
        full = np.ones(N, dtype=bool)
        full[it] = False
        bag += full * (q[rows, cons] + ds[rows, cons]) / 2
        kept += full
    held = tuple(map(np.concatenate, (held_p, held_a, held_y, held_n)))
    return held, bag / np.maximum(kept, 1)


def variants(name: str, data: CrowdData, truth: np.ndarray) -> dict:
    data = CrowdData.from_arrays(data.item, data.worker, data.label, n_items=data.n_items,
                                 n_workers=data.n_workers, n_classes=data.n_classes, validate=False)  # no gold
    q0, ds, oc = fit(DEFAULT_METHOD, data), fit("dawid_skene", data), fit("one_coin_dawid_skene", data)
    cons = q0.argmax(1)
    rows = np.arange(data.n_items)
    n = data.answers_per_item()
    agree = np.bincount(data.item, weights=data.label == cons[data.item], minlength=data.n_items) / np.maximum(n, 1)
    p = (q0[rows, cons] + ds[rows, cons]) / 2
    m = truth >= 0
    wrong = cons[m] != truth[m]
    none = agree == 0                                    # consensus labels no answer gave

    def auc(score):
        return auroc(-score[m], wrong)

    (hp, ha, hy, hn), bagged = refits(data, cons)
    two = hn >= 2
    w = _choose_rank_weight(hp[two], ha[two], hy[two], np.random.default_rng(1))
    current = blend(p, agree, FIXED_WEIGHT)
    return {"crowd": name, "consensus accuracy": 1 - wrong.mean(),
            "consensus given by no answer": float((agree == 0).mean()),
            "accuracy of those": float((cons == truth)[m & none].mean()) if (m & none).any() else float("nan"),
            "their posterior (mean)": float(p[none].mean()) if none.any() else float("nan"),
            "AUROC agreement": auc(agree), "AUROC DS confidence": auc(ds[rows, cons]),
            "AUROC kdcrowd": auc(quality_scores(data, q0).rank_score),
            "AUROC fixed blend (before)": auc(current),
            "w chosen": w, "AUROC blend chosen on held-out answers": auc(blend(p, agree, w)),
            "AUROC + one-coin": auc(0.8 * current + 0.2 * oc[rows, cons]),
            "AUROC bagged refits": auc(blend(bagged, agree, FIXED_WEIGHT))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="7,8,9", help="simulator seeds per simulated setting")
    ap.add_argument("--out", type=Path, default=OUT, help="the markdown table (default: %(default)s)")
    args = ap.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    t0 = time.time()
    found = []
    for name, kw in {**SIMS, **CALIB_SIMS}.items():
        for seed in seeds:
            s = simulate_crowd(n_features=4, gold_fraction=0.0, seed=seed, **kw)
            found.append(variants(f"{name.split(' (')[0]}, seed {seed}", s.data, s.truth))
            print(found[-1], flush=True)
    real = real_crowds()
    for name, (data, truth) in real.items():
        found.append(variants(name, data, truth))
        print(found[-1], flush=True)
    df = pd.DataFrame(found)
    cols = [c for c in df.columns if c.startswith("AUROC") and c not in ("AUROC agreement", "AUROC DS confidence")]
    fails = {c: df.loc[(df[c] <= df["AUROC agreement"]) | (df[c] <= df["AUROC DS confidence"]), "crowd"].tolist()
             for c in cols}
    command = f"python benchmarks/quality_ranking_variants.py --seeds {args.seeds}" + (
        "" if args.out == OUT else f" --out {args.out}")
    lines = ["# Ranking wrong consensus labels: kdcrowd's ranking, the fixed blend before it, and variants not adopted "
             "(EXPERIMENTAL)", "",
             f"`{command}` ({time.strftime('%Y-%m-%d')}, "
             f"{time.time() - t0:.0f} s on this machine). What each variant is: the script's docstring. "
             + ("" if real else "The real crowds were skipped: ../shared/datasets is absent. "), "",
             to_markdown(df, 3), "",
             "Crowds where a score's AUROC is not above both vote agreement's and Dawid-Skene confidence's:", ""]
    lines += [f"- {c}: {', '.join(v) if v else 'none'}" for c, v in fails.items()]
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines[-len(fails):]))
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
