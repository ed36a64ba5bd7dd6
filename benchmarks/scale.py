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
- ``ds``: DawidSkene ``fit`` on 1M and 100k answers, 50 iterations, tolerance 0 (the speed benchmark's
  setting), in a fresh process per run, idle and with ``--load-procs`` (2) competing CPU-bound processes,
  ``--repeats`` (5) idle/loaded pairs back to back, next to Crowd-Kit's DawidSkene on ``--ck-sizes`` (100k)
  answers under the same two conditions (``--no-crowdkit`` skips it): medians and the slow-downs.
  It writes docs/benchmarks_scale_ds.md (``--out`` when it is the only section).

    python benchmarks/scale.py                                  # everything (the 100M run needs ~3 min)
    python benchmarks/scale.py --sections procs,ds --answers 10M  # a quick look
    python benchmarks/scale.py --device cuda                    # on a GPU (not measured here)
    python benchmarks/scale.py --sections ds                    # DS idle vs loaded (~3 min)
    python benchmarks/scale.py --sections trainer --compare-ref ef2773f --out docs/benchmarks_scale_trainer.md

Writes docs/benchmarks_scale.md and docs/benchmarks_scale_ds.md (merged into docs/benchmarks.md by
benchmarks/collect.py).
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
import json, sys, time
import numpy as np
sys.path.insert(0, {root!r})
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
    fit, threads = CK(n_iter=50, tol=0.0).fit, 1
    arg = df
else:
    from kdcrowd_core.data import CrowdData
    from kdcrowd_core.inference import DawidSkene
    arg = CrowdData.from_arrays(item, worker, label, n_classes=K)
    kw = {{"num_threads": {threads}}} if {threads} else {{}}
    ds = DawidSkene(n_iter=50, tol=0.0, device={device!r}, **kw)
    fit = ds.fit
c = time.process_time(); t = time.perf_counter()
fit(arg)
wall, cpu = time.perf_counter() - t, time.process_time() - c
if not {crowdkit}:
    threads = getattr(ds, "num_threads_", None)
print("RESULT", json.dumps({{"wall": wall, "cpu": cpu, "threads": threads}}))
"""


def _time_child(n: int, *, crowdkit: bool, device: str, threads: int | None = None) -> dict:
    """One fit in a fresh process: wall and CPU seconds of ``fit`` (the first call, as a CLI run pays it)."""
    import json
    code = _DS_CHILD.format(root=str(ROOT), n=n, crowdkit=crowdkit, device=device, threads=threads)
    r = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(r.stderr[-2000:])
    return json.loads(r.stdout.split("RESULT", 1)[1])


#: a CPU-bound busy loop that ends when the benchmark does (its parent changes)
_SPIN = "import os\np = os.getppid()\nwhile os.getppid() == p:\n    for _ in range(1_000_000):\n        pass\n"


class _Load:
    """``n`` CPU-bound competing processes (pure-Python busy loops: what other users' single-threaded jobs look
    like to the scheduler), started once and paused (SIGSTOP) while the idle cells run, so that idle and loaded
    runs alternate back to back.  They are children of the benchmark: same session and niceness as the timed
    process, so ``nice`` on the whole command does not change their share against it."""

    def __init__(self, n: int):
        import signal
        self._stop, self._cont = signal.SIGSTOP, signal.SIGCONT
        self.procs = [subprocess.Popen([sys.executable, "-c", _SPIN]) for _ in range(n)]
        self.off()

    def on(self) -> None:
        for p in self.procs:
            p.send_signal(self._cont)
        time.sleep(0.3)  # let the scheduler spread them over the cores

    def off(self) -> None:
        for p in self.procs:
            p.send_signal(self._stop)

    def close(self) -> None:
        for p in self.procs:
            p.kill()
            p.wait()


def _median(xs: list[float]) -> float:
    return float(np.median(xs)) if xs else float("nan")


def section_ds(device: str, crowdkit: bool, repeats: int = 5, load_procs: int = 2, ck_sizes: tuple = (100_000,),
               ds_threads: int | None = None) -> list[str]:
    """Idle and loaded fits alternating back to back (ABBA order over the repeats), medians and paired slow-downs."""
    cells = [("kdcrowd", 1_000_000, None), ("kdcrowd", 100_000, None)]
    if ds_threads:
        cells += [(f"kdcrowd, {ds_threads} thread{'s' if ds_threads > 1 else ''}", n, ds_threads)
                  for n in (1_000_000, 100_000)]
    if crowdkit:
        cells += [("Crowd-Kit", n, None) for n in ck_sizes]
    runs = {c: {"idle": [], "loaded": []} for c in cells}
    load = _Load(load_procs)
    try:
        for rep in range(repeats):
            for cell in cells:
                name, n, th = cell
                for cond in (("idle", "loaded") if rep % 2 == 0 else ("loaded", "idle")):
                    if cond == "loaded":
                        load.on()
                    try:
                        r = _time_child(n, crowdkit=name == "Crowd-Kit", device=device, threads=th)
                    finally:
                        load.off()
                    runs[cell][cond].append(r)
                    print(f"[ds] rep {rep} {name} {fmt_size(n)} {cond}: {r['wall']:.3f} s (CPU {r['cpu']:.3f} s, "
                          f"threads {r['threads']})", file=sys.stderr, flush=True)
    finally:
        load.close()
    rows, slow = [], {}
    for cell in cells:
        name, n, _ = cell
        idle, loaded = runs[cell]["idle"], runs[cell]["loaded"]
        ratios = [b["wall"] / a["wall"] for a, b in zip(idle, loaded)]
        slow[cell] = _median(ratios)
        thr = lambda rs: "/".join(sorted({str(r["threads"]) for r in rs}))  # noqa: E731
        rows.append(f"| {name} | {fmt_size(n)} | {_median([r['wall'] for r in idle]):.3f} | "
                    f"{_median([r['wall'] for r in loaded]):.3f} | {slow[cell]:.2f}x ({min(ratios):.2f}-{max(ratios):.2f}) | "
                    f"{_median([r['cpu'] for r in idle]):.3f} / {_median([r['cpu'] for r in loaded]):.3f} | "
                    f"{thr(idle)} / {thr(loaded)} |")
    lines = ["### DS speed, idle and under competing load", "",
             f"DawidSkene `fit` (default settings, 50 iterations, tolerance 0) in a fresh process per run (the first "
             f"call, as a command-line run pays it), next to Crowd-Kit 1.4.2 DawidSkene(n_iter=50, tol=0) on the same "
             f"simulated crowds (K = 10, 1,000 workers, 5 answers per item). Competing load: {load_procs} CPU-bound "
             f"processes (pure-Python busy loops) started by the benchmark, running during the loaded runs and "
             f"paused (SIGSTOP) during the idle ones; idle and loaded runs of a cell alternate back to back, "
             f"{repeats} pairs per cell (order idle-loaded, then loaded-idle, ...). Times are medians; the slow-down is "
             f"the median of the {repeats} paired ratios loaded / idle (range in brackets). CPU = the fitting "
             "process's CPU seconds (all threads) during `fit`; threads = the thread count DS chose (idle / loaded).",
             "", "| method | answers | idle s | loaded s | slow-down | CPU s idle / loaded | threads idle / loaded |",
             "|---|---|---|---|---|---|---|", *rows, ""]
    ck = {n: v for (name, n, _), v in slow.items() if name == "Crowd-Kit"}
    if ck:
        ref_n = min(ck)
        for n in (1_000_000, 100_000):
            ds = slow.get(("kdcrowd", n, None))
            ref = ck.get(n, ck[ref_n])
            line = (f"- {fmt_size(n)} answers: kdcrowd slowed {ds:.2f}x, Crowd-Kit ({fmt_size(n if n in ck else ref_n)}) "
                    f"{ref:.2f}x; ratio {ds / ref:.2f} (target <= 1: {'met' if ds <= ref else 'NOT met'}).")
            if n in ck:  # speed-up over Crowd-Kit on the same crowd, from the medians
                med = {c: {k: _median([r["wall"] for r in v]) for k, v in runs[c].items()} for c in runs}
                d, c = med[("kdcrowd", n, None)], med[("Crowd-Kit", n, None)]
                line += (f" kdcrowd is {c['idle'] / d['idle']:.0f}x faster than Crowd-Kit idle and "
                         f"{c['loaded'] / d['loaded']:.0f}x under load.")
            lines.append(line)
        lines.append("")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sections", default="e2e,procs,trainer,ds")
    ap.add_argument("--answers", default="100M", help="answers for the end-to-end run (default 100M)")
    ap.add_argument("--procs-answers", default="10M")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-crowdkit", action="store_true")
    ap.add_argument("--repeats", type=int, default=5, help="ds section: idle/loaded pairs per cell (default 5)")
    ap.add_argument("--load-procs", type=int, default=2, help="ds section: competing CPU-bound processes (default 2)")
    ap.add_argument("--ck-sizes", default="100k", help="ds section: Crowd-Kit answer counts, e.g. 100k,1M (1M: ~30 s "
                    "per run)")
    ap.add_argument("--ds-threads", type=int, default=None,
                    help="ds section: also time kdcrowd with this fixed num_threads (diagnosis)")
    ap.add_argument("--tmp", default=None, help="folder for the generated files (default: a temporary folder)")
    ap.add_argument("--out", default=None, help="default docs/benchmarks_scale.md (the ds section: "
                    "docs/benchmarks_scale_ds.md, or --out when it is the only section)")
    ap.add_argument("--trainer-items", type=int, default=100_000, help="items of the trainer section's crowd")
    ap.add_argument("--compare-ref", default=None, metavar="GIT_REV",
                    help="trainer section: also run the code of this git revision (e.g. the commit before the "
                         "speed-ups) on the same files, and print the speed-up against it")
    ap.add_argument("--trainer-threads", type=int, default=None,
                    help="trainer section: OMP_NUM_THREADS of the train processes (default: unset)")
    a = ap.parse_args()
    import signal
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the clean-ups (the ds section's load)
    import torch
    secs = [s.strip() for s in a.sections.split(",") if s.strip()]
    head = [f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB RAM, "
            f"shared with other jobs while measured (load average at start {os.getloadavg()[0]:.1f}); "
            f"Python {platform.python_version()}, torch {torch.__version__}; device `{a.device}`"
            f"{'' if a.device != 'cpu' else ' (not measured on a GPU)'}. Command: `python benchmarks/scale.py "
            f"{' '.join(sys.argv[1:]) or '(defaults)'}`.", ""]
    lines = ["## Scale (benchmarks/scale.py)", "", *head]
    ds_lines = ["## Scale: DS on a busy machine (benchmarks/scale.py --sections ds)", "", *head]
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
                ds_lines += section_ds(a.device, not a.no_crowdkit, a.repeats, a.load_procs,
                                       tuple(parse_size(x) for x in a.ck_sizes.split(",")), a.ds_threads)
            else:
                raise SystemExit(f"unknown section {s!r}")
            print(f"[{s}] {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    # the ds section has its own file (docs/benchmarks_scale_ds.md) unless it is the only one and --out is given
    outs = []
    if secs != ["ds"]:
        outs.append((a.out or str(ROOT / "docs" / "benchmarks_scale.md"), lines))
    if "ds" in secs:
        outs.append(((a.out if secs == ["ds"] else None) or str(ROOT / "docs" / "benchmarks_scale_ds.md"), ds_lines))
    for out, text in outs:
        print("\n".join(text), flush=True)
        Path(out).write_text("\n".join(text).rstrip() + "\n")
        print(f"-> {out}")

if __name__ == "__main__":
    main()
