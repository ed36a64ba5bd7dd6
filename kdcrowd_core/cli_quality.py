"""``kdcrowd items`` and ``kdcrowd relabel``: per-item label quality and what to relabel next.

Both read the answers like ``kdcrowd aggregate`` (same reading options, same ``--method``), optionally
a training run folder (``kdcrowd train --out DIR`` or a dashboard run folder) whose model becomes a
second opinion on every item, and write one CSV (columns in docs/quality.md).
"""
from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from .errors import CrowdDataError


def add_quality_parsers(sub) -> None:
    from .cli import _add_read_options, add_csv_guard_flag
    from .inference import DEFAULT_METHOD, available_methods
    methods = ", ".join(available_methods())

    def common(p):
        p.add_argument("answers", metavar="ANSWERS")
        p.add_argument("--run", metavar="RUN_DIR",
                       help="a training run folder (kdcrowd train --out DIR): adds the model's labels and uses its "
                            "probabilities as a second opinion")
        p.add_argument("--features", metavar="F",
                       help="item features: a classifier trained out of fold on them (each item predicted by a "
                            "model that never saw its answers) is a second opinion on every item (CROWDLAB)")
        p.add_argument("--method", default=None, help=f"truth inference: one of {methods} (default {DEFAULT_METHOD})")
        p.add_argument("--gold", metavar="G", help="gold labels (item, label): adds gold, consensus_correct and "
                                                   "fixed/broke columns; calibrates the quality score")
        p.add_argument("--clamp-gold", action="store_true",
                       help="use the gold labels as known truths during inference (default: gold only measures)")
        p.add_argument("--device", default="auto", help="auto, cpu, cuda, mps (default auto)")
        _add_read_options(p)

    i = sub.add_parser("items", help="per-item label quality: consensus, quality score, reason (likely wrong first)",
                       description="Writes one row per item, the likely-wrong labels first. Columns: "
                                   "docs/quality.md.")
    common(i)
    i.add_argument("--no-class-probas", action="store_true", help="leave out the prob_<class> columns")
    i.add_argument("-o", "--output", required=True, metavar="ITEMS.csv")
    add_csv_guard_flag(i)
    i.set_defaults(func=cmd_items)

    r = sub.add_parser("relabel", help="the items where one more answer helps most, as a platform task list",
                       description="Writes the BUDGET items to send for one more answer (item_id first; MTurk and "
                                   "Toloka take such a CSV as a task list). Columns: docs/quality.md.")
    common(r)
    r.add_argument("--budget", type=int, required=True, metavar="N", help="how many items to relabel")
    r.add_argument("--content", metavar="C",
                   help="item content table (item id + a text/url column) to copy into the task list")
    r.add_argument("--include-gold", action="store_true", help="gold items may be chosen too (default: skipped)")
    r.add_argument("--details", action="store_true",
                   help="write the full ranking (rank, expected_gain, quality, ...) instead of the task list")
    r.add_argument("-o", "--output", required=True, metavar="NEXT.csv")
    add_csv_guard_flag(r)
    r.set_defaults(func=cmd_relabel)


# ------------------------------------------------------------------ helpers
def csv_guard_on(args) -> bool:
    from .cli import csv_guard_on as on
    return on(args)


def write_csv(df: pd.DataFrame, path: str | Path, index: bool = False, guard: bool = True) -> None:
    """The one place these commands write a table (formula-guarded when the io guard is available)."""
    from .io.writers import write_table
    write_table(df.reset_index() if index else df, path, guard=guard)


def find_result_dir(run_dir: str | Path) -> Path:
    """The folder holding a run's ``result.json``: ``RUN_DIR/model``, ``RUN_DIR/result`` or ``RUN_DIR``."""
    p = Path(run_dir)
    if not p.exists():
        raise CrowdDataError("the run folder does not exist.", path=str(p),
                             hint="give the folder written by `kdcrowd train --out DIR`.")
    if not p.is_dir():
        raise CrowdDataError("--run needs a folder, not a file.", path=str(p),
                             hint="give the folder written by `kdcrowd train --out DIR`.")
    for sub in ("model", "result", "."):
        if (p / sub / "result.json").is_file():
            return (p / sub).resolve()
    raise CrowdDataError("this folder holds no training run (no model/result.json).", path=str(p),
                         hint="give the folder written by `kdcrowd train --out DIR`.")


def load_result(run_dir: str | Path):
    """The ``KDResult`` saved in a run folder (weights loaded with ``weights_only=True``)."""
    from .kd import KDResult
    return KDResult.load(find_result_dir(run_dir))


def _prepare(args):
    from .cli import _fit_method, _load
    from .quality import RunView, oof_classifier_proba, run_predictions
    if args.run:
        find_result_dir(args.run)          # a wrong folder fails before the answers are read
    data = _load(args.answers, args, gold=args.gold, features=getattr(args, "features", None))
    method, _ = _fit_method(data, args.method, args.quiet, args.device, clamp_gold=args.clamp_gold)
    run = None
    if args.run:
        result = load_result(args.run)
        run = run_predictions(result, data)
    if data.features is not None:
        run = run or RunView()
        run.model_proba = oof_classifier_proba(data.features, method.proba_array_)
        run.model_source = "out-of-fold classifier on --features"
    return data, method, run


def cmd_items(args) -> int:
    from .quality import item_quality
    data, method, run = _prepare(args)
    table = item_quality(data, method.proba_array_, run, class_probas=not args.no_class_probas)
    write_csv(table, args.output, index=True, guard=csv_guard_on(args))
    if not args.quiet:
        low = int((table["quality"] < 0.7).sum())
        print(f"{method.name}: {data.n_items} items -> {args.output}; {low} with quality < 0.7 "
              f"(quality calibrated on {table.attrs['calibration']}"
              + (f"; second opinion: {run.model_source}" if run is not None and run.model_source else "") + ")")
        if "consensus_correct" in table:
            known = table["consensus_correct"].dropna().astype(bool)
            if len(known):
                from .quality import accuracy_interval
                lo, hi = accuracy_interval(int(known.sum()), len(known))
                print(f"consensus accuracy against gold on {len(known)} items: {known.mean():.4f} "
                      f"(95% interval {lo:.4f}-{hi:.4f})")
    return 0


CONTENT_COLUMNS = ("content", "text", "url", "image", "image_url", "path", "file", "title")


def read_content(path: str) -> pd.Series:
    """Item content (text or URL) by item id: the first column is the id, the content column is the first
    of ``CONTENT_COLUMNS`` present, else the second column."""
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, sep=None, engine="python")
    except FileNotFoundError:
        raise
    except Exception as e:  # noqa: BLE001 - any parse failure becomes one clear message
        raise CrowdDataError(f"could not read the item content table ({type(e).__name__}: {e}).", path=path,
                             hint="give a CSV with an item id column and one content column (text or URL).") from None
    if df.shape[1] < 2:
        raise CrowdDataError(f"the item content table has {df.shape[1]} column(s); expected an item id column and "
                             "a content column.", path=path, hint="add a content column, e.g. item,text.")
    low = {c.strip().lower(): c for c in df.columns}
    col = next((low[c] for c in CONTENT_COLUMNS if c in low), df.columns[1])
    s = pd.Series(df[col].to_numpy(), index=df.iloc[:, 0].str.strip().to_numpy(), name="content")
    return s[~s.index.duplicated(keep="last")]


def cmd_relabel(args) -> int:
    from .quality import relabel_next, relabel_task_list
    if args.budget is not None and args.budget < 1:
        raise CrowdDataError(f"--budget must be at least 1, got {args.budget}.", hint="use --budget 1 or more.")
    data, method, run = _prepare(args)
    try:
        table = relabel_next(data, method.proba_array_, args.budget, run, exclude_gold=not args.include_gold)
    except CrowdDataError as e:
        hint = e.hint.replace("a budget of", "--budget") if e.hint else None
        raise CrowdDataError(e.bare_message, path=args.answers, hint=hint) from None
    content = read_content(args.content) if args.content else None
    out = table.reset_index() if args.details else relabel_task_list(table, content)
    write_csv(out, args.output, guard=csv_guard_on(args))
    if not args.quiet:
        print(f"{method.name}: {len(table)} of {data.n_items} items to relabel -> {args.output} "
              f"(expected gain in accuracy from one more answer each: {table['expected_gain'].sum():.2f} items)",
              file=sys.stdout)
    return 0
