"""Scale benchmark: out-of-core aggregate, 1 vs 2 processes, the 100k-item trainer, DS speed at 1M.

Sections (``--sections``, comma-separated; default all):

- ``e2e``: ``kdcrowd aggregate ANSWERS.parquet --chunked --method dawid_skene -o OUT.parquet`` on a
  simulated crowd of ``--answers`` answers (default 100M; K = 10, 1,000 workers, 5 answers per item,
  int ids in Parquet) in a fresh process: wall time (read + DS + write) and the process's peak
  resident memory (``ru_maxrss``, printed by the command).
- ``procs``: the same on ``--procs-answers`` (default 10M) with ``torchrun --nproc-per-node 1`` and ``2``
  (gloo): wall time, all-reduce bytes per rank per EM iteration, per-rank throughput.
- ``trainer``: ``kdcrowd simulate --items 100000 --classes 10 --workers 1000 --features 128
  --answers-per-item 3 5 --test 10000`` then default ``kdcrowd train`` in a fresh process: wall time, CPU time,
  the trainer's stage timings and test accuracies; ``--compare-ref GIT_REV`` also runs that revision's code
  (``git archive``) on the same files and prints the speed-up against it.
- ``ds``: DawidSkene ``fit`` on 1M answers, 50 iterations, tolerance 0 (the speed benchmark's setting),
  in a fresh process, idle and with two competing CPU-bound processes, next to Crowd-Kit's DawidSkene on
  100k answers under the same two conditions (``--no-crowdkit`` skips it).

    python benchmarks/scale.py                                  # everything (the 100M run needs ~3 min)
    python benchmarks/scale.py --sections procs,ds --answers 10M  # a quick look
    python benchmarks/scale.py --device cuda                    # on a GPU (not measured here)
    python benchmarks/scale.py --sections trainer --compare-ref ef2773f --out docs/benchmarks_scale_trainer.md

Writes docs/benchmarks_scale.md (merged into docs/benchmarks.md by benchmarks/collect.py).
"""
from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def parse_size(s: str) -> int:
    s = s.strip().upper()
    mult = {"K": 1_000, "M": 1_000_000, "G": 1_000_000_000}.get(s[-1], 1)
    return int(float(s[:-1] if s[-1] in "KMG" else s) * mult)


def fmt_size(n: int) -> str:
    return f"{n // 1_000_000}M" if n >= 1_000_000 else f"{n // 1000}k"


def make_parquet(n_answers: int, path: Path, *, K: int = 10, R: int = 1000, per_item: int = 5, seed: int = 0) -> None:
    """A one-coin crowd (worker accuracy uniform in [0.35, 0.95]) written row group by row group."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    rng = np.random.default_rng(seed)
    acc = rng.uniform(0.35, 0.95, R)
    n_items = n_answers // per_item
    step = 400_000  # items per row group
    writer = None
    for i0 in range(0, n_items, step):
        ni = min(step, n_items - i0)
        truth = rng.integers(0, K, ni)
        item = np.repeat(np.arange(i0, i0 + ni, dtype=np.int64), per_item)
        worker = rng.integers(0, R, ni * per_item).astype(np.int32)
        right = rng.random(ni * per_item) < acc[worker]
        label = np.where(right, np.repeat(truth, per_item),
                         (np.repeat(truth, per_item) + rng.integers(1, K, ni * per_item)) % K).astype(np.int16)
        t = pa.table({"item": item, "worker": worker, "label": label})
        if writer is None:
            writer = pq.ParquetWriter(str(path), t.schema)
        writer.write_table(t)
    writer.close()


def _env(threads: int | None = None) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


_SUMMARY = re.compile(r"in (?P<total>[\d.]+) s \(read (?P<read>[\d.]+) s, fit (?P<fit>[\d.]+) s"
                      r"(?:, (?P<it>\d+) iterations)?, write (?P<write>[\d.]+) s\); peak memory (?P<peak>[\d.]+) GB"
                      r"(?: per rank)?(?:; all-reduced (?P<mb>[\d.]+) MB per rank in (?P<calls>\d+) calls)?")


def run_aggregate(answers: Path, out: Path, *, procs: int = 0, device: str = "cpu") -> dict:
    """procs = 0: plain process with --chunked; procs >= 1: torchrun with --distributed."""
    args = ["-m", "kdcrowd_core", "aggregate", str(answers), "--method", "dawid_skene", "-o", str(out),
            "--device", device]
    if procs:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(procs),
               "--master-port", str(29500 + (os.getpid() % 500)), *args, "--distributed"]
    else:
        cmd = [sys.executable, *args, "--chunked"]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, env=_env(), capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{r.stderr[-3000:]}")
    m = _SUMMARY.search(r.stdout)
    if not m:
        raise RuntimeError(f"no summary line in:\n{r.stdout}")
    d = {k: float(v) for k, v in m.groupdict().items() if v is not None}
    d["wall"] = wall
    d["cmd"] = " ".join(["python", *cmd[1:]]).replace(str(ROOT) + "/", "")
    return d


def section_e2e(n: int, tmp: Path, device: str) -> list[str]:
    path = tmp / f"answers_{fmt_size(n)}.parquet"
    t0 = time.perf_counter()
    make_parquet(n, path)
    gen = time.perf_counter() - t0
    r = run_aggregate(path, tmp / "out_e2e.parquet", device=device)
    (tmp / "out_e2e.parquet").unlink(missing_ok=True)
    path.unlink()
    ok_t, ok_m = r["wall"] < 180, r["peak"] < 6
    return [
        f"### {fmt_size(n)} answers end to end (read Parquet, DS, write Parquet)", "",
        f"Command: `kdcrowd aggregate answers.parquet --chunked --method dawid_skene -o out.parquet --device {device}` "
        f"on {n:,} answers ({n // 5:,} items, 1,000 workers, K = 10; the Parquet file was generated in "
        f"{gen:.0f} s, not counted).", "",
        "| answers | wall s (process) | read s | DS s | EM iterations | write s | peak memory GB | "
        "target | spark-crowd (paper, 1 machine) |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| {fmt_size(n)} | {r['wall']:.1f} | {r['read']:.1f} | {r['fit']:.1f} | {int(r.get('it', 0))} | "
        f"{r['write']:.1f} | {r['peak']:.2f} | < 180 s: {'met' if ok_t else 'NOT met'}, < 6 GB: "
        f"{'met' if ok_m else 'NOT met'} | 703 s |", ""]


def section_procs(n: int, tmp: Path, device: str) -> list[str]:
    path = tmp / f"answers_{fmt_size(n)}.parquet"
    make_parquet(n, path, seed=1)
    rows = []
    for p in (1, 2):
        r = run_aggregate(path, tmp / f"out_p{p}.parquet", procs=p, device=device)
        it = max(int(r.get("it", 1)), 1)
        per_it = r.get("mb", 0.0) * 1e6 / (it + 1) if p > 1 else 0.0  # + the final M-step
        rows.append(f"| {p} | {r['wall']:.1f} | {r['read']:.1f} | {r['fit']:.1f} | {it} | {r['peak']:.2f} | "
                    f"{r.get('mb', 0.0):.2f} | {per_it / 1e3:.1f} | {n / p / r['fit'] / 1e6:.2f} |")
    path.unlink()
    return [f"### 1 vs 2 processes on {fmt_size(n)} answers (torchrun, gloo, one machine)", "",
            f"Command: `torchrun --nproc-per-node P -m kdcrowd_core aggregate answers.parquet --distributed "
            f"--method dawid_skene -o out.parquet` (P = 1, 2) on {n:,} answers. Both processes share this machine's "
            "2 cores, so 2 processes cannot be faster here; the table measures what a rank moves per EM iteration "
            "and how fast one rank fits its share (throughput = answers per rank / DS seconds, DS seconds "
            "including building the sparse operators and every EM iteration).", "",
            "| processes | wall s | read s | DS s | iterations | peak GB per rank | all-reduced MB per rank | "
            "kB per iteration | M answers per rank per DS second |",
            "|---|---|---|---|---|---|---|---|---|", *rows, ""]


def _code_tree(rev: str, tmp: Path) -> Path:
    """The repository at ``rev`` extracted into ``tmp`` (git archive: no worktree, nothing changed in the repo)."""
    dest = tmp / f"code-{re.sub(r'[^A-Za-z0-9_.-]', '_', rev)}"
    dest.mkdir(parents=True, exist_ok=True)
    arch = subprocess.run(["git", "-C", str(ROOT), "archive", rev], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=arch, check=True)
    return dest


def _train_once(code: Path, d: Path, out: Path, threads: int | None) -> dict:
    """Default ``kdcrowd train`` of the simulated crowd ``d`` with the code in ``code``, in a fresh process:
    wall time, the process's CPU time (user + system, all threads) and summary.json."""
    import json
    import resource
    env = _env(threads)
    env["PYTHONPATH"] = str(code) + os.pathsep + env["PYTHONPATH"]
    cmd = [sys.executable, "-m", "kdcrowd_core", "-q", "train", str(d / "answers.csv"), "--features",
           str(d / "features.csv"), "--test-features", str(d / "test_features.csv"), "--test-gold",
           str(d / "test_gold.csv"), "--out", str(out)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=code)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if r.returncode != 0:
        return {"error": r.stderr.strip()[-500:]}
    return {"wall": wall, "cpu": cpu, "summary": json.loads((out / "summary.json").read_text())}


def section_trainer(tmp: Path, items: int = 100_000, ref: str | None = None, threads: int | None = None) -> list[str]:
    """Default ``kdcrowd train`` on a simulated crowd of ``items`` items; with ``ref`` (a git revision) the same
    command with that revision's code, in the same run (ratios against it)."""
    d = tmp / f"sim{items}"
    n_test = max(items // 10, 100)
    sim = [sys.executable, "-m", "kdcrowd_core", "-q", "simulate", "--items", str(items), "--classes", "10",
           "--workers", "1000", "--features", "128", "--answers-per-item", "3", "5", "--test", str(n_test),
           "-o", str(d)]
    subprocess.run(sim, env=_env(), check=True, cwd=ROOT, capture_output=True)
    runs = [("this code", ROOT)]
    if ref:
        runs.append((f"`{ref}`", _code_tree(ref, tmp)))
    res = {}
    for name, code in runs:
        res[name] = _train_once(code, d, tmp / f"run-{len(res)}", threads)
        print(f"[trainer] {name}: {res[name].get('wall', 'failed')}", file=sys.stderr, flush=True)
    stages = ("mv", "ds", "teacher", "student", "stage2", "rounds", "total")
    lines = [f"### Trainer, {items:,} items (default `kdcrowd train`)", "",
             f"Commands: `kdcrowd simulate --items {items} --classes 10 --workers 1000 --features 128 "
             f"--answers-per-item 3 5 --test {n_test} -o sim` then `kdcrowd train sim/answers.csv --features "
             "sim/features.csv --test-features sim/test_features.csv --test-gold sim/test_gold.csv -o run`"
             f"{f' (OMP_NUM_THREADS={threads})' if threads else ''}, in a fresh process per row. Wall time of the "
             "command (reading, training, writing); CPU time of the process (all its threads); the trainer's own "
             "stage timings (summary.json `timings`, seconds; `total` is the fit, baselines included)."
             + (f" Reference: the code of git revision `{ref}`, run in the same benchmark on the same files." if ref
                else ""), "",
             "| code | wall s | CPU s | " + " | ".join(stages) + " | test accuracy teacher / student / stage 2 | target |",
             "|---" * (len(stages) + 5) + "|"]
    for name, r in res.items():
        if "error" in r:
            err = r["error"][-200:].replace("\n", " ").replace("|", "/")
            lines.append(f"| {name} | failed: {err} |")
            continue
        t, acc = r["summary"].get("timings", {}), r["summary"].get("test_accuracy", {})
        accs = " / ".join(f"{acc[m]:.4f}" if m in acc else "-" for m in ("teacher", "student", "stage2"))
        target = f"<= 120 s: {'met' if r['wall'] <= 120 else 'NOT met'}" if items == 100_000 else ""
        lines.append(f"| {name} | {r['wall']:.1f} | {r['cpu']:.1f} | "
                     + " | ".join(f"{t[k]:.1f}" if k in t else "-" for k in stages) + f" | {accs} | {target} |")
    this, other = res.get("this code", {}), res.get(f"`{ref}`", {}) if ref else {}
    if "wall" in this and "wall" in other:
        lines += ["", f"Speed-up against `{ref}` in this run: wall {other['wall'] / this['wall']:.2f}x, CPU "
                      f"{other['cpu'] / this['cpu']:.2f}x."]
    return lines + [""]


_DS_CHILD = """
import sys, time, numpy as np, torch
sys.path.insert(0, {root!r})
from kdcrowd_core.data import CrowdData
n = {n}
rng = np.random.default_rng(0)
K, R, per = 10, 1000, 5
items = n // per
truth = rng.integers(0, K, items)
acc = rng.uniform(0.35, 0.95, R)
item = np.repeat(np.arange(items), per); worker = rng.integers(0, R, n)
right = rng.random(n) < acc[worker]
label = np.where(right, truth[item], (truth[item] + rng.integers(1, K, n)) % K)
if {crowdkit}:
    import pandas as pd
    from crowdkit.aggregation import DawidSkene as CK
    df = pd.DataFrame({{"task": item, "worker": worker, "label": label}})
    t = time.perf_counter(); CK(n_iter=50, tol=0.0).fit(df); print("TIME", time.perf_counter() - t)
else:
    from kdcrowd_core.inference import DawidSkene
    d = CrowdData.from_arrays(item, worker, label, n_classes=K)
    kw = {{"num_threads": {threads}}} if {threads} else {{}}
    ds = DawidSkene(n_iter=50, tol=0.0, device={device!r}, **kw)
    t = time.perf_counter(); ds.fit(d); print("TIME", time.perf_counter() - t)
"""


def _time_child(n: int, *, crowdkit: bool, device: str, threads: int | None = None) -> float:
    code = _DS_CHILD.format(root=str(ROOT), n=n, crowdkit=crowdkit, device=device, threads=threads)
    r = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(r.stderr[-2000:])
    return float(r.stdout.split("TIME")[-1])


class _Load:
    """Two CPU-bound competing processes (what two other users' jobs look like to the scheduler)."""

    def __enter__(self):
        self.procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
        time.sleep(1.0)
        return self

    def __exit__(self, *exc):
        for p in self.procs:
            p.kill()
            p.wait()


def section_ds(device: str, crowdkit: bool) -> list[str]:
    rows = []
    res = {}
    for loaded in (False, True):
        ctx = _Load() if loaded else _NoLoad()
        with ctx:
            res[loaded] = {
                "ds_1m": _time_child(1_000_000, crowdkit=False, device=device),
                "ds_100k": _time_child(100_000, crowdkit=False, device=device),
                "ck_100k": _time_child(100_000, crowdkit=True, device=device) if crowdkit else float("nan"),
            }
    for loaded in (False, True):
        r = res[loaded]
        rows.append(f"| {'2 competing CPU-bound processes' if loaded else 'idle (as idle as the shared machine was)'} "
                    f"| {r['ds_1m']:.2f} | {r['ds_100k']:.3f} | {r['ck_100k']:.2f} | {r['ck_100k'] / r['ds_100k']:.0f}x |")
    slow_ds = res[True]["ds_100k"] / res[False]["ds_100k"]
    slow_ck = res[True]["ck_100k"] / res[False]["ck_100k"] if crowdkit else float("nan")
    return ["### DS speed, idle and under competing load", "",
            "DawidSkene `fit` (default settings, 50 iterations, tolerance 0) in a fresh process per cell; "
            "Crowd-Kit 1.4.2 DawidSkene(n_iter=50, tol=0) on the same 100k crowd.", "",
            "| machine | kdcrowd 1M s | kdcrowd 100k s | Crowd-Kit 100k s | speed-up at 100k |",
            "|---|---|---|---|---|", *rows, "",
            f"Slow-down under load at 100k: kdcrowd {slow_ds:.1f}x, Crowd-Kit {slow_ck:.1f}x.", ""]


class _NoLoad:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sections", default="e2e,procs,trainer,ds")
    ap.add_argument("--answers", default="100M", help="answers for the end-to-end run (default 100M)")
    ap.add_argument("--procs-answers", default="10M")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-crowdkit", action="store_true")
    ap.add_argument("--tmp", default=None, help="folder for the generated files (default: a temporary folder)")
    ap.add_argument("--out", default=str(ROOT / "docs" / "benchmarks_scale.md"))
    ap.add_argument("--trainer-items", type=int, default=100_000, help="items of the trainer section's crowd")
    ap.add_argument("--compare-ref", default=None, metavar="GIT_REV",
                    help="trainer section: also run the code of this git revision (e.g. the commit before the "
                         "speed-ups) on the same files, and print the speed-up against it")
    ap.add_argument("--trainer-threads", type=int, default=None,
                    help="trainer section: OMP_NUM_THREADS of the train processes (default: unset)")
    a = ap.parse_args()
    import torch
    secs = [s.strip() for s in a.sections.split(",") if s.strip()]
    lines = ["## Scale (benchmarks/scale.py)", "",
             f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
             f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB RAM, "
             f"shared with other jobs while measured (load average at start {os.getloadavg()[0]:.1f}); "
             f"Python {platform.python_version()}, torch {torch.__version__}; device `{a.device}`"
             f"{'' if a.device != 'cpu' else ' (not measured on a GPU)'}. Command: `python benchmarks/scale.py "
             f"{' '.join(sys.argv[1:]) or '(defaults)'}`.", ""]
    with tempfile.TemporaryDirectory(dir=a.tmp) as t:
        tmp = Path(t)
        for s in secs:
            t0 = time.perf_counter()
            if s == "e2e":
                lines += section_e2e(parse_size(a.answers), tmp, a.device)
            elif s == "procs":
                lines += section_procs(parse_size(a.procs_answers), tmp, a.device)
            elif s == "trainer":
                lines += section_trainer(tmp, a.trainer_items, a.compare_ref, a.trainer_threads)
            elif s == "ds":
                lines += section_ds(a.device, not a.no_crowdkit)
            else:
                raise SystemExit(f"unknown section {s!r}")
            print(f"[{s}] {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
            print("\n".join(lines), flush=True)
    Path(a.out).write_text("\n".join(lines).rstrip() + "\n")
    print(f"-> {a.out}")


if __name__ == "__main__":
    main()
