"""Data-parallel training benchmark: ``kdcrowd train`` on 1 process vs ``torchrun --nproc-per-node P ... --distributed``.

A simulated crowd (``kdcrowd simulate --items N --classes 5 --workers 40 --features F --test 1000``) is
trained with the default settings and ``--epochs E``: on one process with one thread, on one process
with P threads (the cores the P processes use; ``--no-threaded`` skips it) and on P gloo processes of
one thread each (``OMP_NUM_THREADS``).
Reported: the training time (``summary.json`` ``timings.total``), the command's wall time, the test
accuracy of teacher / student / stage 2, and each rank's gradient all-reduce bytes and seconds.

    python benchmarks/ddp_train.py                          # 4,000 items, 10 epochs, 2 processes
    python benchmarks/ddp_train.py --items 20000 --epochs 20

Writes docs/benchmarks_ddp_train.md (merged into docs/benchmarks.md by benchmarks/collect.py).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(cmd: list[str], threads: int) -> tuple[float, subprocess.CompletedProcess]:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONPATH=str(ROOT) + os.pathsep
               + os.environ.get("PYTHONPATH", ""))
    t0 = time.perf_counter()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{r.stderr[-3000:]}")
    return wall, r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=4000)
    ap.add_argument("--features", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--no-threaded", action="store_true", help="skip the one-process run with P threads")
    ap.add_argument("--out", default=str(ROOT / "docs" / "benchmarks_ddp_train.md"))
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sim = Path(tmp) / "sim"
        _run([sys.executable, "-m", "kdcrowd_core", "-q", "simulate", "--items", str(a.items), "--classes", "5",
              "--workers", "40", "--features", str(a.features), "--test", "1000", "--seed", "3", "-o", str(sim)], 1)
        train = ["train", str(sim / "answers.csv"), "--features", str(sim / "features.csv"), "--test-features",
                 str(sim / "test_features.csv"), "--test-gold", str(sim / "test_gold.csv"), "--epochs",
                 str(a.epochs), "--device", "cpu"]
        rows = []
        runs = [(1, 1)] + ([] if a.no_threaded else [(1, a.procs)]) + [(a.procs, 1)]
        for procs, threads in runs:
            out = Path(tmp) / f"run{procs}x{threads}"
            if procs == 1:
                cmd = [sys.executable, "-m", "kdcrowd_core", "-q", *train, "--out", str(out)]
            else:
                cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(procs), "--master-addr",
                       "127.0.0.1", "--master-port", str(_free_port()), "-m", "kdcrowd_core", *train, "--distributed",
                       "--out", str(out)]
            wall, r = _run(cmd, threads)
            s = json.loads((out / "summary.json").read_text())
            acc = " / ".join(f"{s['test_accuracy'][m]:.3f}" for m in ("teacher", "student", "stage2"))
            comm = re.findall(r"rank (\d+)/\d+: .*?\(([\d.]+) MB all-reduced in ([\d.]+) s\)", r.stderr)
            comm_txt = "; ".join(f"rank {k}: {mb} MB in {sec} s" for k, mb, sec in sorted(comm)) or "-"
            rows.append((f"{procs} x {threads} thread{'s' if threads > 1 else ''}", s["timings"]["total"], wall, acc,
                         comm_txt))
            print(f"{procs} process(es) x {threads} thread(s): training {s['timings']['total']:.1f} s, wall {wall:.1f} s, accuracy {acc}, "
                  f"all-reduce {comm_txt}", flush=True)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = ["## Data-parallel training: 1 vs several processes", "",
             f"`python benchmarks/ddp_train.py --items {a.items} --features {a.features} --epochs {a.epochs} "
             f"--procs {a.procs}{' --no-threaded' if a.no_threaded else ''}` on {platform.node()} "
             f"({os.cpu_count()} CPUs, load average {load:.1f} at the end), CPU, gloo.", "",
             "| processes x threads | training (timings.total) | wall | test accuracy teacher / student / stage 2 | "
             "gradient all-reduce per rank |", "|---|---|---|---|---|"]
    lines += [f"| {p} | {t:.1f} s | {w:.1f} s | {acc} | {c} |" for p, t, w, acc, c in rows]
    Path(a.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
