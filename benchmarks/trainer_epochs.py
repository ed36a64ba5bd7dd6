"""CPU time per epoch of each trainer stage at 100k items, this code against a git revision, one thread.

A whole default ``kdcrowd train`` run (benchmarks/scale.py ``--sections trainer``) needs a quiet machine for its
wall time; the cost of one epoch of each stage is a CPU-time figure that a shared machine still gives, and the
reference code runs in the same window, alternating with this code (``--repeats`` pairs), so both see the same
load.  Each measurement is a fresh process with ``torch.set_num_threads(1)`` that builds the same simulated crowd
(``--items`` items, 128 features, 10 classes, 1,000 workers, 3-5 answers per item), prepares the trainer (MV,
DS), then times, after one warm-up epoch, ``--epochs`` epochs of: the AggNet teacher on every item, a cross-fit
fold teacher (80 % of the items), stage 2 (AggNet with the student term), the student (MIG-KL, robust none).

    python benchmarks/trainer_epochs.py --compare-ref b17d50c
    python benchmarks/trainer_epochs.py --items 20000 --epochs 3 --compare-ref b17d50c --out /tmp/epochs.md

Writes docs/benchmarks_trainer_epochs.md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale import _code_tree  # noqa: E402  (the reference code tree, as benchmarks/scale.py builds it)

CHILD = r"""
import json, sys, time, numpy as np, torch
from kdcrowd_core.data import CrowdData
from kdcrowd_core.kd import KDConfig, KDCrowd
from kdcrowd_core.kd.context import _make_head
from kdcrowd_core.kd.student import train_student
from kdcrowd_core.kd.teacher import train_crowd_model
torch.set_num_threads(1)
N, E = {items}, {epochs}
rng = np.random.default_rng(0)
cnt = rng.integers(3, 6, N); item = np.repeat(np.arange(N), cnt); A = len(item)
truth = rng.integers(0, 10, N)
worker = rng.integers(0, 1000, A)
label = np.where(rng.random(A) < 0.7, truth[item], rng.integers(0, 10, A))
X = (rng.standard_normal((N, 128)) + truth[:, None] * 0.05).astype(np.float32)
data = CrowdData.from_arrays(item, worker, label, n_classes=10)
data = data.with_features(X, data.item_ids)
tr = KDCrowd(KDConfig(device="cpu", num_threads=1))
tr.prepare(data, torch.device("cpu"))
ctx = tr.ctx_
ds_q = torch.as_tensor(tr.ds_.proba_array_, dtype=torch.float32)
every = torch.arange(N)
fold = every[every % 5 != 0]
s_probs = torch.softmax(torch.randn(N, 10, generator=torch.Generator().manual_seed(0)), 1)

def student(e):
    h = _make_head(ctx.cfg, 128, 10, student=True)
    h.fit_standardizer(ctx.X)
    train_student(ctx, h, ds_q, every, e, robust="none", label="s")

stages = {{
    "AggNet teacher, every item": lambda e: train_crowd_model(ctx, tr.new_crowd_model(), every, e, "teacher",
                                                              init_q=ds_q, label="t"),
    "fold teacher, 80 % of the items": lambda e: train_crowd_model(ctx, tr.new_crowd_model(), fold, e, "teacher",
                                                                   init_q=ds_q, label="t"),
    "stage 2 (with the student term)": lambda e: train_crowd_model(ctx, tr.new_crowd_model(), every, e, "stage2",
                                                                   student_probs=s_probs, lam=1.0, label="t"),
    "student (MIG-KL)": student,
}}
out = {{}}
for name, f in stages.items():
    f(1)
    c = time.process_time()
    f(E)
    out[name] = (time.process_time() - c) / E
print("RESULT", json.dumps(out))
"""


def _measure(code: Path, items: int, epochs: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(code), OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-c", CHILD.format(items=items, epochs=epochs)], env=env, cwd=code,
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(r.stderr[-2000:])
    line = [x for x in r.stdout.splitlines() if x.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2, help="pairs of runs (this code, reference), alternating")
    ap.add_argument("--compare-ref", required=True, metavar="GIT_REV")
    ap.add_argument("--out", default=str(ROOT / "docs" / "benchmarks_trainer_epochs.md"))
    a = ap.parse_args()
    with open("/proc/loadavg") as f:
        load0 = f.read().split()[0]
    with tempfile.TemporaryDirectory() as tmp:
        ref = _code_tree(a.compare_ref, Path(tmp))
        runs: dict[str, list[dict]] = {"this code": [], a.compare_ref: []}
        for rep in range(a.repeats):
            order = [("this code", ROOT), (a.compare_ref, ref)]
            for name, code in order if rep % 2 == 0 else order[::-1]:
                runs[name].append(_measure(code, a.items, a.epochs))
                print(f"[epochs] rep {rep} {name}: {runs[name][-1]}", file=sys.stderr, flush=True)
    stages = list(runs["this code"][0])
    med = {n: {s: statistics.median(r[s] for r in rs) for s in stages} for n, rs in runs.items()}
    rows = [f"| {s} | {med[a.compare_ref][s] * 1e3:.0f} | {med['this code'][s] * 1e3:.0f} | "
            f"{med[a.compare_ref][s] / med['this code'][s]:.2f}x |" for s in stages]
    import torch
    lines = ["## Trainer epochs (benchmarks/trainer_epochs.py)", "",
             f"Machine: {platform.machine()}, {os.cpu_count()} cores, shared with other jobs while measured (load "
             f"average at start {load0}); Python {platform.python_version()}, torch {torch.__version__}. Command: "
             f"`python benchmarks/trainer_epochs.py --items {a.items} --epochs {a.epochs} --repeats {a.repeats} "
             f"--compare-ref {a.compare_ref}`.", "",
             f"CPU milliseconds per epoch of {a.items:,} simulated items, one thread, median of {a.repeats} fresh "
             f"processes per code (this code and `{a.compare_ref}` alternating in the same window); the stages' "
             "default settings (batch `clip(N // 16, 64, 4096)`, MLP 128 -> 128 -> 10, dropout 0.5).", "",
             f"| stage | `{a.compare_ref}` ms | this code ms | speed-up |", "|---|---|---|---|", *rows, ""]
    Path(a.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"-> {a.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
