"""Dashboard pages with many classes or many workers: time, memory and figure size per page.

Generates a crowd with the project's simulator (``kdcrowd simulate``), then, for each page, starts a
fresh Python process that loads the answers through the Data page (``streamlit.testing.v1.AppTest``,
the same code as the browser) and renders that page.  Per page it reports the render time of the
page, the peak resident memory of the process (data loading included) and the size of the Plotly
figures the page sends.  Targets (issue 10): every page under 5 s and 1 GB with 1,000
classes.  Page ``items+relabel`` is the Item quality page and then, where the relabel ranking waits for a
click (many classes), the click on "Rank the items to relabel": its row times that click.

Usage: python benchmarks/dashboard_scale.py [--classes 1000 --items 20000 --workers 100]
                                            [--many-workers 20000] [--out docs/benchmarks_dashboard_scale.md]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["data", "labels", "items", "items+relabel", "workers", "disagreement"]
TARGET_S, TARGET_MB = 5.0, 1024


def render_page(answers: Path, page: str) -> dict:
    """In this process: load ``answers`` on the Data page, then render ``page``; time, memory, payload."""
    page, _, variant = page.partition("+")
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("KDCROWD_HOME", tempfile.mkdtemp(prefix="kdscale-"))
    from streamlit.testing.v1 import AppTest

    from dashboard import state
    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=900)
    at.run()
    t0 = time.perf_counter()
    at.session_state[state.PENDING] = [("answers", answers.read_bytes(), answers.name)]
    at.run()
    load_s = time.perf_counter() - t0
    errors = [e.value for e in at.error]
    t0, c0 = time.perf_counter(), time.process_time()
    if page != "data":
        at.switch_page(f"app_pages/{page}.py")
    at.run()
    # the analyses started in the background on upload: the first render of an analysis page waits for them
    page_s, page_cpu_s = time.perf_counter() - t0, time.process_time() - c0
    if variant == "relabel":            # the click on "Rank the items to relabel" (when the page waits for it)
        rank = [b for b in at.button if b.key == "relabel_rank"]
        if not rank:
            return {"page": f"{page}+relabel", "note": "no click to time: ranked with the page (row above)"}
        t0, c0 = time.perf_counter(), time.process_time()
        rank[0].click().run()
        page_s, page_cpu_s = time.perf_counter() - t0, time.process_time() - c0
        page = f"{page}+relabel"
    t0 = time.perf_counter()
    at.run()
    rerun_s = time.perf_counter() - t0
    fig_bytes = sum(len(el.proto.spec) for el in at.get("plotly_chart"))
    return {"page": page, "load_s": load_s, "page_s": page_s, "page_cpu_s": page_cpu_s, "rerun_s": rerun_s,
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "figures_mb": fig_bytes / 1e6, "n_figures": len(at.get("plotly_chart")),
            "exceptions": [str(e.value)[:300] for e in at.exception], "errors": [str(e)[:300] for e in errors]}


def simulate(out: Path, classes: int, items: int, workers: int, apl: tuple[int, int]) -> Path:
    cmd = [sys.executable, "-c", "import sys; from kdcrowd_core.cli import main; sys.exit(main())", "-q",
           "simulate", "--items", str(items), "--classes", str(classes), "--workers", str(workers),
           "--features", "0", "--answers-per-item", str(apl[0]), str(apl[1]), "--gold-fraction", "0.05",
           "-o", str(out)]
    subprocess.run(cmd, check=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    return out / "answers.csv"


def run_case(name: str, answers: Path, pages: list[str]) -> list[dict]:
    rows = []
    for page in pages:
        r = subprocess.run([sys.executable, __file__, "--render", str(answers), "--page", page],
                           capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
        line = [x for x in r.stdout.splitlines() if x.startswith("{")]
        if r.returncode != 0 or not line:
            rows.append({"case": name, "page": page, "failed": (r.stderr or r.stdout)[-500:]})
        else:
            rows.append({"case": name, "page": page, **json.loads(line[-1])})
        print(rows[-1], file=sys.stderr, flush=True)
    return rows


def table(rows: list[dict]) -> str:
    out = ["| crowd | page | page render (s) | its CPU time (s) | rerun (s) | peak memory (MB) | figures (MB) "
           "| within 5 s and 1 GB |",
           "|---|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        if "failed" in r:
            out.append(f"| {r['case']} | {r['page']} | failed: {r['failed'][-120:]!r} | | | | | no |")
            continue
        if "note" in r:
            out.append(f"| {r['case']} | {r['page']} | {r['note']} | | | | | |")
            continue
        ok = r["page_s"] < TARGET_S and r["peak_mb"] < TARGET_MB and not r["exceptions"]
        out.append(f"| {r['case']} | {r['page']} | {r['page_s']:.2f} | {r['page_cpu_s']:.2f} | {r['rerun_s']:.2f} | "
                   f"{r['peak_mb']:.0f} | "
                   f"{r['figures_mb']:.2f} | {'yes' if ok else 'no'} |")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--items", type=int, default=20000)
    ap.add_argument("--workers", type=int, default=100)
    ap.add_argument("--many-workers", type=int, default=20000, help="workers of the second crowd (8 classes); "
                                                                    "0 = skip it")
    ap.add_argument("--pages", default=",".join(PAGES))
    ap.add_argument("--out", default=str(ROOT / "docs" / "benchmarks_dashboard_scale.md"))
    ap.add_argument("--render", help=argparse.SUPPRESS)
    ap.add_argument("--page", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.render:
        print(json.dumps(render_page(Path(args.render), args.page)))
        return 0
    pages = args.pages.split(",")
    rows = []
    with tempfile.TemporaryDirectory() as d:
        a = simulate(Path(d) / "classes", args.classes, args.items, args.workers, (3, 5))
        rows += run_case(f"{args.items:,} items, {args.classes:,} classes, {args.workers:,} workers", a, pages)
        if args.many_workers:
            n_items = max(args.items, args.many_workers * 2)
            b = simulate(Path(d) / "workers", 8, n_items, args.many_workers, (3, 5))
            rows += run_case(f"{n_items:,} items, 8 classes, {args.many_workers:,} workers", b, pages)
    md = table(rows)
    print(md)
    head = ("# Dashboard pages at scale\n\n"
            f"`python benchmarks/dashboard_scale.py --classes {args.classes} --items {args.items} "
            f"--workers {args.workers} --many-workers {args.many_workers} --pages {args.pages}` on {platform.machine()}, "
            f"{os.cpu_count()} CPU cores, Python {platform.python_version()} (a shared machine: times vary).\n\n"
            "Each page runs in a fresh process under `streamlit.testing.v1.AppTest`: the answers are uploaded "
            "through the Data page, then the page is rendered. *page render* = the first render of the page "
            "after the upload (it waits for the background analyses the upload started); *rerun* = the same "
            "page again (cached); *its CPU time* = CPU seconds of the whole process (the background analysis "
            "included) during that first render: close to the render time on an idle machine, a measure that a "
            "busy machine does not inflate; *peak memory* = the process's peak resident memory, loading included; "
            "*figures* = bytes of the Plotly figures the page sends to the browser; *items+relabel* = the click "
            "on \"Rank the items to relabel\" after the Item quality page's first render (with many classes the "
            "page waits for that click): its *page render* and *CPU time* are the click's, its peak memory the "
            "process's. "
            f"Targets: under {TARGET_S:.0f} s and {TARGET_MB} MB per page.\n\n")
    Path(args.out).write_text(head + md + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
