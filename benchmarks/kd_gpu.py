"""KD-Crowd at scale: a large simulated crowd through the whole trainer on the auto device.

Default: 500,000 items, 128-d features, 5 answers per item, K = 10, 2,000 workers; prints the
seconds of every stage and the throughput (item-epochs per second).  Shrink it for a CPU smoke run:

    python benchmarks/kd_gpu.py                                   # GPU (auto device)
    python benchmarks/kd_gpu.py --items 20000 --device cpu        # CPU
    python benchmarks/kd_gpu.py --amp --batch-size 8192           # bfloat16 autocast on CUDA

Only stdout; nothing is written to docs/ (paste the numbers into docs/kd.md).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kdcrowd_core.kd import KDConfig, KDCrowd  # noqa: E402
from kdcrowd_core.simulate import simulate_crowd  # noqa: E402


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=500_000)
    ap.add_argument("--features", type=int, default=128)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--workers", type=int, default=2000)
    ap.add_argument("--answers", type=int, default=5)
    ap.add_argument("--test", type=int, default=20_000)
    ap.add_argument("--teacher", default="aggnet")
    ap.add_argument("--epochs", type=int, default=10, help="epochs of every stage")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=0, help="0 = automatic (clip(N // 16, 64, 4096))")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--amp", action="store_true")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    t = time.perf_counter()
    sim = simulate_crowd(n_items=args.items, n_classes=args.classes, n_features=args.features,
                         n_workers=args.workers, answers_per_item=args.answers, n_test=args.test,
                         overlap=1.0, seed=args.seed)
    data = sim.data
    data.gold = sim.truth.copy()   # for the accuracy printout only (use_gold=False: never trained on)
    print(f"simulated {data.n_items:,} items, {data.n_answers:,} answers, {data.n_workers} workers, "
          f"K={data.n_classes}, d={args.features} in {time.perf_counter() - t:.1f} s")

    cfg = KDConfig(teacher=args.teacher, epochs_teacher=args.epochs, epochs_student=args.epochs,
                   epochs_stage2=args.epochs, cross_fit_folds=args.folds, batch_size=args.batch_size,
                   device=args.device, amp=args.amp, seed=args.seed)
    last = {"t": time.perf_counter()}

    def cb(ev):
        if ev["stage"] in ("teacher", "student", "stage2") and ev["epoch"] == ev["n_epochs"]:
            now = time.perf_counter()
            print(f"  {ev['message'] or ev['stage']:<28} {now - last['t']:7.2f} s  "
                  f"train acc {ev['train_accuracy'] if ev['train_accuracy'] is None else round(ev['train_accuracy'], 4)}")
            last["t"] = now

    res = KDCrowd(cfg).fit(data, test=(sim.test_features, sim.test_truth, sim.test_ids), callback=cb)
    N, E = data.n_items, args.epochs
    n_teachers = 1 + (args.folds if args.folds > 1 else 0)
    tim = res.timings
    print(f"device: {res.device}")
    print("seconds per stage:", json.dumps({k: round(v, 2) for k, v in tim.items()}))
    thr = {
        "teacher (item-epochs/s)": N * E * (1 + (args.folds - 1 if args.folds > 1 else 0)) / max(tim["teacher"], 1e-9),
        "student (item-epochs/s)": N * E / max(tim["student"], 1e-9),
        "stage2 (item-epochs/s)": N * E / max(tim["stage2"], 1e-9),
        "whole pipeline (items/s)": N / max(tim["total"], 1e-9),
    }
    print(f"teachers trained: {n_teachers}")
    for k, v in thr.items():
        print(f"  {k:<28} {v:,.0f}")
    print("train accuracy:", json.dumps({k: round(v, 4) for k, v in res.train_accuracy.items()}))
    print("test accuracy:", json.dumps({k: round(v, 4) for k, v in res.test_accuracy.items()}))


if __name__ == "__main__":
    main()
