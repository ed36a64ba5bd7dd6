"""``kdcrowd train``: the KD-Crowd pipeline from files to a run folder."""
from __future__ import annotations

import sys
import threading
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import CrowdDataError


def add_train_parser(sub) -> None:
    t = sub.add_parser(
        "train", help="train a teacher crowd model, a KD-Crowd student and stage 2 on item features",
        description="Writes DIR/labels.csv, DIR/workers.csv, DIR/worker_matrices.json (with many classes a "
                    "summary, the matrices in DIR/worker_matrices.npz), DIR/test_predictions.csv (with "
                    "--test-features) and DIR/summary.json.")
    t.add_argument("answers", metavar="ANSWERS")
    t.add_argument("--features", required=True, metavar="F", help="features of the answered items")
    t.add_argument("--gold", metavar="G", help="gold labels of some answered items (for accuracy only)")
    t.add_argument("--valid-features", metavar="VF", help="validation items' features (model selection only)")
    t.add_argument("--valid-gold", metavar="VG", help="validation items' labels")
    t.add_argument("--keep-valid-in-training", action="store_true",
                   help="validation items that also have answers in ANSWERS stay in training (default: their "
                        "answers are left out, so that model selection is not biased towards fitting them)")
    t.add_argument("--valid-from-gold", type=float, default=0, metavar="N",
                   help="hold N gold items (from --gold; a number below 1 is a share of them) out of training as "
                        "validation data, drawn with --seed (instead of --valid-features/--valid-gold)")
    t.add_argument("--test-features", metavar="TF", help="held-out items to predict")
    t.add_argument("--test-gold", metavar="TG", help="held-out items' labels (for test accuracy)")
    t.add_argument("--teacher", default=None, help="teacher crowd model (default: the measured best)")
    t.add_argument("--distill", default=None, help="student loss: mig-kl, mig-pearson, mig-hellinger, kl, ce")
    t.add_argument("--robust", default=None, help="student robust technique (see docs/kd.md)")
    t.add_argument("--epochs", type=int, default=None, help="epochs for every stage (default: per-stage defaults)")
    t.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--clamp-gold", action="store_true",
                   help="train with the --gold labels as known truths (default: gold only measures accuracy)")
    t.add_argument("--out", required=True, metavar="DIR")
    from .cli import add_csv_guard_flag
    from .io.options import add_cli_arguments
    add_cli_arguments(t)
    add_csv_guard_flag(t)
    from .cli_ddp import add_distributed_options
    add_distributed_options(t)
    t.set_defaults(func=cmd_train)


def _split(features: str, gold: str | None, classes: pd.Index, what: str, options=None):
    from .kd.pipeline import read_split   # the same reader as the dashboard and the benchmark
    return read_split(features, gold, classes, what, options)


#: the fewest answered items KD-Crowd trains on (the trainer refuses fewer)
MIN_TRAIN_ITEMS = 4


def check_trainable(data, answers: str) -> None:
    """What the trainer would refuse, said before training in terms of the files (train and validate run it)."""
    if data.features is None:
        raise CrowdDataError("training needs item features, and none were given.", path=answers,
                             hint="give a features file with --features (one row per item), or make one from the "
                                  "items' texts or images with kdcrowd embed.")
    if data.n_items < MIN_TRAIN_ITEMS:
        raise CrowdDataError(f"KD-Crowd needs answers for at least {MIN_TRAIN_ITEMS} items to train; this file has "
                             f"{data.n_items}.", path=answers,
                             hint="add the answers of more items (all the batches of the task), or infer the labels "
                                  "of these few items without training: kdcrowd aggregate.")


def validation_splits(args, data):
    """The --valid-*/--test-* files read and checked as train reads them (None where not given)."""
    from .cli import read_options
    if bool(getattr(args, "valid_features", None)) != bool(getattr(args, "valid_gold", None)):
        raise CrowdDataError("--valid-features and --valid-gold go together.",
                             hint="give both, or neither (then no model selection on validation data).")
    valid = test = None
    if getattr(args, "valid_features", None):
        valid = _split(args.valid_features, args.valid_gold, data.classes, "validation", read_options(args))
    if getattr(args, "test_features", None):
        test = _split(args.test_features, getattr(args, "test_gold", None), data.classes, "test",
                      read_options(args))
    return valid, test


def cmd_train(args) -> int:
    from .cli import _load, csv_guard_on, read_options
    from .io.worker_matrices import write_worker_matrices
    from .io.writers import write_json, write_table
    from .interrupt import sigint_cancels
    from .kd import KDConfig, KDCrowd, TrainingCancelled
    from .kd.pipeline import hold_out_gold, leave_out_items, train_kd
    from .kd.progress import CliProgress
    from .metrics import worker_stats

    if getattr(args, "distributed", False) and getattr(args, "data_parallel", None) is None:
        from .cli_ddp import run_distributed   # torchrun: every rank runs this command (cli_ddp.py)
        return run_distributed(args, cmd_train)
    if bool(args.valid_features) != bool(args.valid_gold):
        raise CrowdDataError("--valid-features and --valid-gold go together.",
                             hint="give both, or neither (then no model selection on validation data).")
    if args.valid_from_gold and (args.valid_features or not args.gold):
        raise CrowdDataError("--valid-from-gold needs --gold and replaces --valid-features/--valid-gold.",
                             hint="give --gold with --valid-from-gold N, or validation files, not both.")
    if args.valid_from_gold < 0:
        raise CrowdDataError("--valid-from-gold must be >= 0.", hint="e.g. --valid-from-gold 100 or 0.2.")
    data = _load(args.answers, args, gold=args.gold, features=args.features)
    check_trainable(data, args.answers)
    overrides = {k: v for k, v in {"teacher": args.teacher, "distill": args.distill, "robust": args.robust,
                                   "device": args.device, "seed": args.seed}.items() if v is not None}
    if args.epochs is not None:
        overrides.update(epochs_teacher=args.epochs, epochs_student=args.epochs, epochs_stage2=args.epochs)
    if getattr(args, "clamp_gold", False):
        overrides["use_gold"] = True
    cfg = KDConfig(**overrides)
    valid = test = None
    n_valid_out = 0
    if args.valid_features:
        Xv, yv, vid = _split(args.valid_features, args.valid_gold, data.classes, "validation",
                             read_options(args))
        valid = (Xv, yv)
        if not args.keep_valid_in_training:
            data, n_valid_out = leave_out_items(data, vid)
            if n_valid_out and not args.quiet:
                print(f"note: {n_valid_out} validation items also have answers in {args.answers}; their answers "
                      "are left out of training (--keep-valid-in-training keeps them).", file=sys.stderr)
    elif args.valid_from_gold:
        data, valid, held = hold_out_gold(data, args.valid_from_gold, args.seed)
        n_valid_out = len(held)
        if valid is None:
            raise CrowdDataError("--valid-from-gold: the answers have too few gold items (--gold) to hold any out.",
                                 path=args.gold, hint="give --gold with at least two labelled answered items.")
        if not args.quiet:
            print(f"note: {n_valid_out} gold items (and their answers) are held out of training as validation data.",
                  file=sys.stderr)
    if args.test_features:
        Xt, yt, tid = _split(args.test_features, args.test_gold, data.classes, "test", read_options(args))
        test = (Xt, yt, tid)

    progress = CliProgress(args.quiet, cfg.rounds)   # one bar per stage, fold and round (kd/progress.py)
    bars = progress.bars

    trainer = KDCrowd(cfg)
    trainer.data_parallel = getattr(args, "data_parallel", None)
    try:
        with sigint_cancels(threading.Event(), what="training", quiet=args.quiet) as cancel:
            result = train_kd(data, cfg, valid=valid, test=test, callback=progress, cancel=cancel,
                              trainer=trainer).result_   # the dashboard's and the benchmark's pipeline
    except TrainingCancelled:
        for b in bars.values():
            b.close()
        if trainer.data_parallel is not None and trainer.data_parallel.rank != 0:
            return EXIT_INTERRUPTED   # rank 0 writes what was finished
        return save_interrupted(trainer, Path(args.out))
    for b in bars.values():
        b.close()
    if trainer.data_parallel is not None and trainer.data_parallel.rank != 0:
        return 0   # rank 0 writes the run

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    labels = result.labels_frame()
    labels.index.name = "item"
    write_table(labels.reset_index(), out / "labels.csv", guard=csv_guard_on(args))
    before = worker_stats(data, result.probas["ds"], result.worker_matrices["ds"])
    after = worker_stats(data, result.probas["stage2"], result.worker_matrices["stage2"])
    workers = before.add_suffix("_before").join(after.drop(columns=[c for c in ("answers",) if c in after])
                                               .add_suffix("_after"))
    if "answers_before" in workers:
        workers = workers.rename(columns={"answers_before": "answers"})
    workers.index.name = "worker"
    write_table(workers.reset_index(), out / "workers.csv", guard=csv_guard_on(args))
    # nested JSON up to a size, else worker_matrices.npz with a JSON summary (io/worker_matrices.py)
    matrix_files = write_worker_matrices(out, data.classes, data.worker_ids, {
        "before": ("dawid_skene", result.worker_matrices["ds"]),
        "teacher": (f"teacher ({cfg.teacher})", result.worker_matrices["teacher"]),
        "after": ("stage2", result.worker_matrices["stage2"])})
    if test is not None:
        tp = pd.DataFrame({"item": test[2]})
        for m in ("teacher", "student", "stage2"):
            tp[m] = data.classes.take(result.test_probas[m].argmax(axis=1))
        for m in ("teacher", "student", "stage2"):
            tp[f"{m}_confidence"] = result.test_probas[m].max(axis=1)
        if test[1] is not None:
            g = pd.Series(data.classes.take(np.clip(test[1], 0, None)), dtype=object)
            tp["gold"] = g.where(test[1] >= 0, None)
        write_table(tp, out / "test_predictions.csv", guard=csv_guard_on(args))
    summary = result.summary()
    summary["validation_items_left_out_of_training"] = n_valid_out
    write_json(summary, out / "summary.json")
    trainer.save(out / "model")
    if not args.quiet:
        print(f"run written to {out}/ (labels.csv, workers.csv, {', '.join(f.name for f in matrix_files)}, "
              "summary.json"
              f"{', test_predictions.csv' if test is not None else ''}, model/)")
        for key in ("train_accuracy", "test_accuracy"):
            if summary.get(key):
                print(f"{key}: " + ", ".join(f"{k} {v:.4f}" for k, v in summary[key].items()))
        print(summary["final_model"].get("note", ""))
    return 0


#: Exit status of a run stopped by Ctrl-C (128 + SIGINT), finished stages saved or not.
EXIT_INTERRUPTED = 130


def save_interrupted(trainer, out: Path) -> int:
    """Write what an interrupted fit finished (``OUT/labels.csv`` of the finished stages and ``OUT/partial/``),
    say so on stderr, and return :data:`EXIT_INTERRUPTED`."""
    from .io.writers import write_table
    from .kd.partial import partial_result
    part = partial_result(trainer)
    if part is None or not part.finished:
        print("kdcrowd train: interrupted before any stage finished; nothing was written.", file=sys.stderr)
        return EXIT_INTERRUPTED
    out.mkdir(parents=True, exist_ok=True)
    part.save(out / "partial")
    write_table(part.labels_frame().reset_index(), out / "labels.csv")
    print(f"kdcrowd train: interrupted: {part.describe()} Written: {out / 'labels.csv'} (labels of the finished "
          f"stages) and {out / 'partial'}/ (probabilities, worker matrices, weights). Run again to train the rest.",
          file=sys.stderr)
    return EXIT_INTERRUPTED
