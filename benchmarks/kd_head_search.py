"""Search the shared head / optimiser settings of KD-Crowd on VALIDATION data only (never test).

For each variant (JSON overrides of ``KDConfig``), dataset and seed, with the data of
``benchmarks/kd_accuracy.py`` (LabelMe: its valid split; Music: 100 gold train songs held out per seed):
the validation accuracy of the head trained on gold labels, on Dawid-Skene posteriors, of crowd models
trained alone (``--models``), and with ``--pipeline`` of the whole KD-Crowd pipeline (``train_kd``: teacher,
student, stage 2, recommended model).  The test split is not read.

    python benchmarks/kd_head_search.py --seeds 3 --variants '{"base": {}, "wd": {"weight_decay": 1e-3}}'
    python benchmarks/kd_head_search.py --pipeline --variants @variants.json

Prints a table of mean validation accuracy per variant (and writes it to ``--out`` when given).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from kd_accuracy import datasets_dir, load_labelme, load_music  # noqa: E402

from kdcrowd_core.kd import KDConfig, KDCrowd, _accuracy, _make_head, _to_t, train_crowd_model, train_student  # noqa: E402
from kdcrowd_core.kd.context import _Run  # noqa: E402
from kdcrowd_core.kd.pipeline import train_kd  # noqa: E402


def run_variant(split, cfg: KDConfig, models: list[str], pipeline: bool) -> dict[str, float]:
    out: dict[str, float] = {}
    tr = KDCrowd(cfg)
    t0 = time.perf_counter()
    dev = torch.device("cpu")
    ctx = tr.prepare(split.data, dev, split.valid[0], split.valid[1], _Run(None, None, 1))
    K, N = split.data.n_classes, split.data.n_items
    all_idx = torch.arange(N, device=dev)

    def fit_clf(targets: np.ndarray, name: str):
        torch.manual_seed(cfg.seed)
        h = _make_head(cfg, split.data.features.shape[1], K).to(dev)
        h.fit_standardizer(ctx.X)
        train_student(ctx, h, _to_t(targets, dev), all_idx, cfg.epochs_student, stage=name, distill="ce",
                      robust="none")
        out[f"clf-{name}"] = _accuracy(h, ctx.Xv, ctx.yv)

    fit_clf(np.eye(K)[split.data.gold], "gold")
    fit_clf(tr.ds_.proba_array_, "ds")
    ds_q = _to_t(tr.ds_.proba_array_, dev)
    for p in models:
        torch.manual_seed(cfg.seed)
        m = tr.new_crowd_model(p)
        train_crowd_model(ctx, m, all_idx, cfg.epochs_teacher, "teacher", init_q=ds_q, label=p)
        out[p] = _accuracy(m.classifier, ctx.Xv, ctx.yv)
    if pipeline:
        KDCrowd.test_baselines = False
        res = train_kd(split.data, cfg, valid=split.valid).result_
        for m in ("teacher", "student", "stage2"):
            out[f"kd-{m}"] = res.valid_accuracy.get(m)
        out["kd-final"] = res.valid_accuracy.get(res.final)
    out["time"] = time.perf_counter() - t0
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", required=True, help="JSON {name: overrides} or @file.json")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--datasets", default="labelme,music")
    ap.add_argument("--models", default="aggnet", help="crowd models trained alone ('' = none)")
    ap.add_argument("--pipeline", action="store_true", help="also the whole KD-Crowd pipeline")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    spec = args.variants
    variants = json.loads(Path(spec[1:]).read_text() if spec.startswith("@") else spec)
    models = [m for m in args.models.split(",") if m]
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    loaders = {"labelme": load_labelme, "music": load_music}
    d = datasets_dir()
    rows = []
    for ds in args.datasets.split(","):
        splits = {s: loaders[ds](d, s) for s in seeds}
        for name, ov in variants.items():
            base = KDConfig.from_dict({"device": "cpu", **ov})
            per = [run_variant(splits[s], dataclasses.replace(base, seed=s), models, args.pipeline) for s in seeds]
            keys = [k for k in per[0] if k != "time"]
            mean = {k: float(np.mean([p[k] for p in per if p.get(k) is not None])) for k in keys}
            rows.append((ds, name, mean, float(np.sum([p["time"] for p in per]))))
            print(f"{ds:8s} {name:24s} " + " ".join(f"{k} {v:.3f}" for k, v in mean.items()) +
                  f" ({rows[-1][3]:.0f} s) per seed: " +
                  "; ".join(" ".join(f"{p[k]:.3f}" for k in keys if p.get(k) is not None) for p in per), flush=True)
    keys = list(rows[0][2]) if rows else []
    lines = [f"Validation accuracy only (mean over seeds {seeds}); variants: {json.dumps(variants)}", "",
             "| dataset | variant | " + " | ".join(keys) + " |", "|---|---|" + "---|" * len(keys)]
    lines += [f"| {ds} | {name} | " + " | ".join(f"{m.get(k, float('nan')):.3f}" for k in keys) + " |"
              for ds, name, m, _ in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
