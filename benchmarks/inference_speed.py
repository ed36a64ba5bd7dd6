"""Dawid-Skene speed: kdcrowd against Crowd-Kit's DawidSkene, in the same run.

Simulated crowds (K = 10 classes, 1,000 workers, 5 answers per item) of
100k, 1M and 10M answers; 50 EM iterations each (tolerance 0, so both run all
50).  Each (tool, size) runs in a fresh subprocess so that its peak memory is
its own: peak = the process's peak resident memory during the fit minus its
resident memory just before (Linux ``/proc/self/clear_refs`` resets the peak).

    python benchmarks/inference_speed.py                   # 100k, 1M, 10M on CPU
    python benchmarks/inference_speed.py --sizes 100M --device cuda --no-crowdkit   # on a GPU

Writes the table to docs/benchmarks_inference_speed.md (merged into docs/benchmarks.md).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


THREADS = None  # --threads: CPU threads for kdcrowd's DS (None = torch's default)


def parse_size(s: str) -> int:
    s = s.strip().upper()
    mult = {"K": 1_000, "M": 1_000_000, "G": 1_000_000_000}.get(s[-1], 1)
    return int(float(s[:-1] if s[-1] in "KMG" else s) * mult)


def fmt_size(n: int) -> str:
    return f"{n // 1_000_000}M" if n >= 1_000_000 else f"{n // 1000}k"


def make_crowd(n_answers: int, path: Path, seed: int = 0) -> None:
    from kdcrowd_core.simulate import simulate_crowd
    per_item = 5
    sim = simulate_crowd(n_items=n_answers // per_item, n_classes=10, n_features=0, n_workers=1000,
                         answers_per_item=(per_item, per_item), seed=seed)
    d = sim.data
    np.savez(path, item=d.item, worker=d.worker, label=d.label, truth=sim.truth,
             n=np.array([d.n_items, d.n_workers, d.n_classes]))


def _rss_kb(field: str) -> int:
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1])
    return 0


def _reset_peak() -> int:
    """Reset the process's peak resident memory (Linux) and return the current RSS in kB."""
    before = _rss_kb("VmRSS")
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    return before


def child(tool: str, path: str, n_iter: int, device: str) -> None:
    """Runs in a subprocess: load, reset the peak, fit, print one JSON line."""
    z = np.load(path)
    item, worker, label, truth = z["item"], z["worker"], z["label"], z["truth"]
    N, R, K = (int(v) for v in z["n"])
    if tool == "crowdkit":
        import pandas as pd
        from crowdkit.aggregation import DawidSkene as CK
        df = pd.DataFrame({"task": item, "worker": worker, "label": label})
        before = _reset_peak()
        t0 = time.perf_counter()
        res = CK(n_iter=n_iter, tol=0.0).fit_predict(df)
        secs = time.perf_counter() - t0
        pred = res.reindex(np.arange(N)).to_numpy()
        gpu_peak = None
        em_secs = None
    else:
        import torch
        from kdcrowd_core.data import CrowdData
        from kdcrowd_core.inference import DawidSkene
        data = CrowdData.from_arrays(item, worker, label, n_items=N, n_workers=R, n_classes=K, validate=False)
        if device.startswith("cuda"):
            DawidSkene(n_iter=2, tol=0.0, device=device).fit(data)  # warm up CUDA context and kernels
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        before = _reset_peak()
        t0 = time.perf_counter()
        # tol=-inf: every iteration runs (with tol=0 the loss test stops once float32 noise makes it dip)
        m = DawidSkene(n_iter=n_iter, tol=-float("inf"), device=device, num_threads=THREADS).fit(data)
        assert m.n_iter_ == n_iter, m.n_iter_
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        secs = time.perf_counter() - t0
        pred = m.proba_array_.argmax(axis=1)
        gpu_peak = torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None
        em_secs = m.timings_["em"]
    peak = max(_rss_kb("VmHWM") - before, 0) / 2**20
    acc = float((pred == truth).mean())
    print(json.dumps({"seconds": secs, "em_seconds": em_secs, "peak_gb": peak, "accuracy": acc,
                      "gpu_peak_gb": gpu_peak}))


def run_child(tool: str, path: Path, n_iter: int, device: str, timeout: float) -> dict | None:
    cmd = [sys.executable, __file__, "--child", tool, str(path), "--iters", str(n_iter), "--device", device]
    if THREADS:
        cmd += ["--threads", str(THREADS)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"did not finish in {timeout:.0f} s"}
    if out.returncode != 0:
        return {"error": (out.stderr.strip().splitlines() or ["failed"])[-1][:120]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def machine() -> str:
    import torch
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return (f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB RAM{gpu}; Python {platform.python_version()}, "
            f"torch {torch.__version__} ({THREADS or torch.get_num_threads()} threads for kdcrowd)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", default=["100k", "1M", "10M"])
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-crowdkit", action="store_true")
    ap.add_argument("--crowdkit-max", default="1M", help="largest size to run Crowd-Kit on (it needs ~1 min per 1M)")
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--out", default=str(ROOT / "docs" / "benchmarks_inference_speed.md"))
    ap.add_argument("--threads", type=int, default=None, help="CPU threads for kdcrowd (default: torch's)")
    ap.add_argument("--child", nargs=2, metavar=("TOOL", "PATH"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    global THREADS
    THREADS = args.threads
    if args.child:
        child(args.child[0], args.child[1], args.iters, args.device)
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for s in args.sizes:
            n = parse_size(s)
            path = Path(tmp) / f"crowd_{n}.npz"
            t0 = time.perf_counter()
            make_crowd(n, path)
            print(f"simulated {fmt_size(n)} answers in {time.perf_counter() - t0:.1f} s", flush=True)
            ours = run_child("kdcrowd", path, args.iters, args.device, args.timeout)
            ck = None
            if not args.no_crowdkit and n <= parse_size(args.crowdkit_max):
                ck = run_child("crowdkit", path, args.iters, "cpu", args.timeout)
            elif not args.no_crowdkit:
                ck = {"error": f"not run (> {args.crowdkit_max}; about 1 min per 1M answers)"}
            rows.append((n, ours, ck))
            print(json.dumps({"size": n, "kdcrowd": ours, "crowdkit": ck}), flush=True)
            path.unlink(missing_ok=True)
    lines = [
        "## Dawid-Skene speed (benchmarks/inference_speed.py)",
        "",
        f"Machine: {machine()}. Device for kdcrowd: `{args.device}`.",
        f"Simulated crowds: K = 10, 1,000 workers, 5 answers per item; {args.iters} EM iterations, tolerance 0.",
        "kdcrowd s = the whole `fit` (building the sparse operators, EM, copying results back and making the "
        "pandas outputs); EM s = the 50 iterations alone. "
        "Peak = extra resident memory during the fit (GPU: peak allocated CUDA memory).",
        "",
        "| answers | kdcrowd s | kdcrowd EM s | kdcrowd peak GB | kdcrowd acc | Crowd-Kit s | Crowd-Kit peak GB | Crowd-Kit acc | speed-up |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for n, o, c in rows:
        if "error" in o:
            ocells = [o["error"], "", "", ""]
        else:
            peak = o["gpu_peak_gb"] if o.get("gpu_peak_gb") is not None else o["peak_gb"]
            ocells = [f"{o['seconds']:.2f}", f"{o['em_seconds']:.2f}", f"{peak:.2f}" + (" (GPU)" if o.get("gpu_peak_gb") is not None else ""),
                      f"{o['accuracy']:.4f}"]
        if c is None:
            ccells, ratio = ["not run", "", ""], ""
        elif "error" in c:
            ccells, ratio = [c["error"], "", ""], ""
        else:
            ccells = [f"{c['seconds']:.2f}", f"{c['peak_gb']:.2f}", f"{c['accuracy']:.4f}"]
            ratio = f"{c['seconds'] / o['seconds']:.0f}x" if "error" not in o else ""
        lines.append(f"| {fmt_size(n)} | " + " | ".join(ocells + ccells + [ratio]) + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(args.out)
    if args.device.startswith("cuda") and out.exists():
        text = out.read_text() + "\n" + text
    out.write_text(text)
    print(f"written to {out}")


if __name__ == "__main__":
    main()
