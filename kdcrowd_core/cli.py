"""The ``kdcrowd`` command.

Every command has ``--help``.  Bad input ends with exit status 2 and one line
on stderr saying what is wrong and how to fix it (``--debug`` shows the
traceback instead).
"""
from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

import numpy as np
import pandas as pd

from .errors import CrowdDataError

EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 1


# ----------------------------------------------------------------- helpers
def _progress(desc: str, total: int | None, quiet: bool):
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, unit="it", disable=quiet, leave=False, file=sys.stderr)


def read_options(args):
    """The ReadOptions of the reading flags (``--item``, ``--id-transform``, ``--label-map`` ...)."""
    from .io.options import from_cli_args
    return from_cli_args(args)


def _load(answers: str, args, *, gold: str | None = None, features: str | None = None):
    from .io import load_crowd
    from .io.options import read_limits
    return load_crowd(answers, gold=gold, features=features, options=read_options(args), **read_limits(args))


def _fit_method(data, name: str | None, quiet: bool, device: str = "auto", clamp_gold: bool = False):
    from .inference import get_method
    method = get_method(name)
    if hasattr(method, "use_gold"):
        method.use_gold = clamp_gold
    if hasattr(method, "device"):
        method.device = device
    bar = _progress(f"{method.name}", getattr(method, "n_iter", None), quiet)
    if hasattr(method, "callback"):
        method.callback = lambda it, ll: bar.update(1)
    t0 = time.perf_counter()
    method.fit(data)
    bar.close()
    return method, time.perf_counter() - t0


def _echo(msg: str, quiet: bool = False) -> None:
    if not quiet:
        print(msg)


def _add_read_options(p: argparse.ArgumentParser) -> None:
    from .io.options import add_cli_arguments
    add_cli_arguments(p)


def add_csv_guard_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-csv-guard", action="store_true",
                   help="write CSV cells as they are: by default a cell starting with = + - @ (a spreadsheet "
                        "formula) gets a leading ' (docs/formats.md, 'CSV outputs')")


def csv_guard_on(args) -> bool:
    return not getattr(args, "no_csv_guard", False)


def _write_df(df: pd.DataFrame, path: str, args=None) -> None:
    from .io.writers import write_table
    write_table(df, path, guard=csv_guard_on(args))


# ----------------------------------------------------------------- commands
def cmd_validate(args) -> int:
    """Read the files exactly as the other commands do and run every check train runs (when features are given)."""
    for f in args.files:
        data = _load(f, args, gold=args.gold, features=args.features)
        for rep in data.report:
            print(rep.to_text("cli"))
        print(f"  -> {data.n_items} items, {data.n_workers} workers, {data.n_classes} classes "
              f"({', '.join(map(str, data.classes[:12]))}{', ...' if data.n_classes > 12 else ''}), "
              f"{data.n_answers} answers; answers per item: min {data.answers_per_item().min()}, "
              f"median {int(np.median(data.answers_per_item()))}, max {data.answers_per_item().max()}")
        if args.gold:
            print(f"{args.gold} (gold): {int(data.gold_mask.sum())} answered items have a gold label")
        if args.features:
            from .cli_train import check_trainable, validation_splits
            check_trainable(data, f)
            valid, test = validation_splits(args, data)
            print(f"{args.features} (features): {data.features.shape[1]} features; all {data.n_items} answered "
                  "items covered")
            for name, split, path in (("validation", valid, getattr(args, "valid_features", None)),
                                      ("test", test, getattr(args, "test_features", None))):
                if split is not None:
                    print(f"{path} ({name}): {split[0].shape[0]} items")
            print("  -> ready for kdcrowd train")
    return 0


def cmd_aggregate(args) -> int:
    from .cli_scale import aggregate_streaming, wants_streaming
    if wants_streaming(args):
        return aggregate_streaming(args)
    data = _load(args.answers, args, gold=args.gold)
    method, secs = _fit_method(data, args.method, args.quiet, args.device, args.clamp_gold)
    from .quality import gold_accuracy, labels_table
    q = method.proba_array_
    out = labels_table(data, q)
    _write_df(out, args.output, args)
    _echo(f"{method.name}: {data.n_items} items, {data.n_workers} workers, {data.n_answers} answers "
          f"in {secs:.2f} s -> {args.output}", args.quiet)
    if data.has_gold:
        m = data.gold_mask
        if args.clamp_gold:
            print(f"gold labels of {int(m.sum())} items were clamped (used as known truths); "
                  "run without --clamp-gold to measure accuracy against them")
        else:
            g = gold_accuracy(data, q)
            print(f"accuracy against gold on {g['n']} items: {g['accuracy']:.4f}")
            print(f"95% interval of that accuracy (Wilson): {g['low']:.4f} to {g['high']:.4f}")
    return 0


def cmd_workers(args) -> int:
    from .quality import WorkerThresholds, block_list, bonus_list, work_seconds_from_file, worker_report
    data = _load(args.answers, args, gold=args.gold)
    method, secs = _fit_method(data, args.method, args.quiet, args.device, clamp_gold=args.clamp_gold)
    th = WorkerThresholds(min_answers=args.min_answers, block_accuracy=args.block_accuracy,
                          block_spammer=args.block_spammer, bonus_accuracy=args.bonus_accuracy)
    table = worker_report(data, method.proba_array_, method.worker_matrices_, th,
                          work_seconds=work_seconds_from_file(args.answers, args.worker))
    _write_df(table.reset_index(), args.output, args)
    _echo(f"{method.name}: {data.n_workers} workers in {secs:.2f} s -> {args.output}; "
          f"{int((table['action'] == 'block').sum())} to block, {int((table['action'] == 'bonus').sum())} for a bonus"
          + (" (gold clamped during inference)" if args.clamp_gold and data.has_gold else ""), args.quiet)
    if args.matrices:
        from .io.writers import write_json
        write_json(matrices_json(data, method.worker_matrices_, method.name), args.matrices)
        _echo(f"worker matrices -> {args.matrices}", args.quiet)
    if args.block_list:
        _write_df(block_list(table, args.platform), args.block_list, args)
        _echo(f"block list ({args.platform}) -> {args.block_list}", args.quiet)
    if args.bonus_list:
        _write_df(bonus_list(table, args.platform, amount=args.bonus_amount), args.bonus_list, args)
        _echo(f"bonus list ({args.platform}) -> {args.bonus_list}", args.quiet)
    return 0


def matrices_json(data, T: np.ndarray, method: str) -> dict:
    """Worker matrices as JSON: ``workers[id][true][answer]`` probabilities."""
    return {
        "method": method,
        "layout": "matrix[i][j] = P(worker answers classes[j] | true class is classes[i])",
        "classes": [str(c) for c in data.classes],
        "workers": {str(w): np.round(T[r], 6).tolist() for r, w in enumerate(data.worker_ids)},
    }


def cmd_simulate(args) -> int:
    from .simulate import simulate_crowd
    lo, hi = args.answers_per_item
    sim = simulate_crowd(n_items=args.items, n_classes=args.classes, n_features=args.features,
                         n_workers=args.workers, answers_per_item=(lo, hi), gold_fraction=args.gold_fraction,
                         n_test=args.test, instance_noise=args.instance_noise, seed=args.seed)
    sim.to_files(args.output)
    d = sim.data
    _echo(f"simulated {d.n_items} items, {d.n_workers} workers, {d.n_classes} classes, {d.n_answers} answers "
          f"-> {args.output}", args.quiet)
    return 0


# -------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    from .inference import DEFAULT_METHOD, available_methods
    p = argparse.ArgumentParser(prog="kdcrowd", description="Quality of crowdsourced labels: worker expertise, "
                                "true labels and KD-Crowd training.")
    p.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or chatter")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    v = sub.add_parser("validate", help="read files and report what was read and what was skipped and why")
    v.add_argument("files", nargs="+", metavar="FILE", help="answers file(s)")
    v.add_argument("--gold", help="gold labels file (item, label)")
    v.add_argument("--features", help="item features file (then every check of kdcrowd train runs too)")
    v.add_argument("--valid-features", metavar="VF", help="validation items' features (as for train)")
    v.add_argument("--valid-gold", metavar="VG", help="validation items' labels")
    v.add_argument("--test-features", metavar="TF", help="held-out items' features")
    v.add_argument("--test-gold", metavar="TG", help="held-out items' labels")
    _add_read_options(v)
    v.set_defaults(func=cmd_validate)

    methods = ", ".join(available_methods())
    a = sub.add_parser("aggregate", help="infer the true label of every item")
    a.add_argument("answers", metavar="ANSWERS")
    a.add_argument("--method", default=None, help=f"one of {methods} (default {DEFAULT_METHOD})")
    a.add_argument("--gold", help="gold labels (item, label): accuracy against them is printed")
    a.add_argument("--clamp-gold", action="store_true",
                   help="use the gold labels as known truths during inference (semi-supervised)")
    a.add_argument("--device", default="auto", help="auto, cpu, cuda, mps (default auto)")
    a.add_argument("-o", "--output", required=True, metavar="OUT.csv",
                   help="columns item, label, confidence, prob_<class>...")
    _add_read_options(a)
    add_csv_guard_flag(a)
    from .cli_scale import add_scale_options
    add_scale_options(a)
    a.set_defaults(func=cmd_aggregate)

    w = sub.add_parser("workers", help="estimate each worker's expertise (confusion matrix)")
    w.add_argument("answers", metavar="ANSWERS")
    w.add_argument("--method", default=None, help=f"one of {methods} (default {DEFAULT_METHOD})")
    w.add_argument("--gold", help="gold labels: adds gold accuracy per worker")
    w.add_argument("--clamp-gold", action="store_true",
                   help="use the gold labels as known truths during inference (default: gold only measures)")
    w.add_argument("--device", default="auto")
    w.add_argument("-o", "--output", required=True, metavar="WORKERS.csv",
                   help="every worker (never filtered): accuracy with its 95%% interval, flags, action")
    w.add_argument("--matrices", metavar="MATRICES.json", help="also write every worker's K x K matrix")
    f = w.add_argument_group("flags (docs/quality.md)")
    f.add_argument("--min-answers", type=int, default=10, help="workers with fewer answers are never flagged")
    f.add_argument("--block-accuracy", type=float, default=0.5,
                   help="block when the accuracy's 95%% interval lies entirely below this")
    f.add_argument("--block-spammer", type=float, default=0.1, help="block when the spammer score is below this")
    f.add_argument("--bonus-accuracy", type=float, default=0.85,
                   help="bonus when the accuracy's 95%% interval lies entirely above this")
    f.add_argument("--block-list", metavar="BLOCK.csv", help="write the workers to block, in --platform's shape")
    f.add_argument("--bonus-list", metavar="BONUS.csv", help="write the workers for a bonus, in --platform's shape")
    f.add_argument("--platform", choices=["mturk", "toloka"], default="mturk")
    f.add_argument("--bonus-amount", type=float, default=1.0, help="bonus per worker (USD)")
    _add_read_options(w)
    add_csv_guard_flag(w)
    w.set_defaults(func=cmd_workers)

    s = sub.add_parser("simulate", help="write a synthetic crowd with known truth and worker matrices")
    s.add_argument("--items", type=int, default=1000)
    s.add_argument("--classes", type=int, default=5)
    s.add_argument("--workers", type=int, default=50)
    s.add_argument("--features", type=int, default=16, help="feature dimensions (0 = none)")
    s.add_argument("--answers-per-item", type=int, nargs=2, default=(2, 5), metavar=("MIN", "MAX"))
    s.add_argument("--gold-fraction", type=float, default=0.1)
    s.add_argument("--instance-noise", type=float, default=0.0)
    s.add_argument("--test", type=int, default=0, help="held-out test items")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("-o", "--output", required=True, metavar="DIR")
    s.set_defaults(func=cmd_simulate)

    from .cli_dashboard import add_dashboard_parser
    add_dashboard_parser(sub)
    from .cli_quality import add_quality_parsers
    add_quality_parsers(sub)
    from .cli_predict import add_predict_parser
    add_predict_parser(sub)
    from .cli_embed import add_embed_parser
    add_embed_parser(sub)

    try:
        from .cli_train import add_train_parser
    except ImportError:  # pragma: no cover - trainer not installed
        pass
    else:
        add_train_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        return int(args.func(args) or 0)
    except CrowdDataError as e:
        if args.debug:
            raise
        print(f"kdcrowd {args.command}: error: {e.render('cli')}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (FileNotFoundError, IsADirectoryError, PermissionError) as e:
        if args.debug:
            raise
        print(f"kdcrowd {args.command}: error: {e.strerror or e}: {e.filename}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"kdcrowd {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # never a bare traceback
        if args.debug:
            raise
        print(f"kdcrowd {args.command}: internal error: {type(e).__name__}: {e} "
              "(run with --debug for the traceback, and please report it)", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
