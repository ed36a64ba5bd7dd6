"""``kdcrowd predict``: apply a trained run's classifier to new items."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .errors import CrowdDataError

MODELS = ("recommended", "teacher", "student", "stage2")


def add_predict_parser(sub) -> None:
    p = sub.add_parser("predict", help="label new items with a trained run's classifier",
                       description="Writes OUT.csv: item, label, confidence, prob_<class>... and the model used. "
                                   "The weights are loaded with torch.load(weights_only=True).")
    p.add_argument("run", metavar="RUN_DIR", help="a training run folder (kdcrowd train --out DIR)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--features", metavar="F", help="features of the new items (same columns as the run was "
                                                      "trained on)")
    src.add_argument("--texts", metavar="ITEMS", help="raw texts (a table with item and text columns), embedded "
                                                      "like `kdcrowd embed --text` (for runs trained on those)")
    src.add_argument("--images", metavar="DIR_OR_ZIP", help="raw images, embedded like `kdcrowd embed --images`")
    p.add_argument("--model", choices=MODELS, default="recommended",
                   help="which classifier: the run's recommended model (final_model; stage 2 when the run has "
                        "none), teacher, student or stage2")
    p.add_argument("--features-item", metavar="COLUMN", help="item column of the features table (default: detect)")
    p.add_argument("--feature-ids", metavar="FILE",
                   help="for .npy features: a text file with the item id of each row, one per line")
    p.add_argument("--device", default="cpu", help="cpu, cuda, mps (default cpu)")
    p.add_argument("-o", "--output", required=True, metavar="OUT.csv")
    from .cli import add_csv_guard_flag
    add_csv_guard_flag(p)
    p.set_defaults(func=cmd_predict)


def recommended_model(result) -> str:
    """``final_model`` of the run's summary when it names a classifier, else ``"stage2"``."""
    try:
        s = result.summary() or {}
    except Exception:  # noqa: BLE001
        s = {}
    final = s.get("final_model") or s.get("final")
    if isinstance(final, dict):
        final = final.get("model") or final.get("name")
    return str(final) if final in ("teacher", "student", "stage2") else "stage2"


def predict_table(trainer, X: np.ndarray, ids, model: str = "recommended") -> pd.DataFrame:
    """``item, label, confidence, prob_<class>..., model`` for features ``X`` (n, d) of items ``ids``."""
    res = trainer.result_
    name = recommended_model(res) if model == "recommended" else model
    P = trainer.predict_proba(X, name)
    out = pd.DataFrame({"item": list(ids), "label": res.classes.take(P.argmax(1)), "confidence": P.max(1)})
    for k, c in enumerate(res.classes):
        out[f"prob_{c}"] = P[:, k]
    out["model"] = name
    return out


def load_trainer(run_dir: str | Path, device: str = "cpu"):
    from .cli_quality import find_result_dir
    from .kd import KDCrowd
    d = find_result_dir(run_dir)
    try:
        return KDCrowd.load(d, device=device)
    except CrowdDataError as e:
        raise CrowdDataError(e.bare_message, path=str(run_dir),
                             hint="give a folder written by `kdcrowd train --out DIR` (it saves the weights)."
                             ) from None


def cmd_predict(args) -> int:
    from .cli import read_options
    from .cli_quality import write_csv
    from .io import read_features
    trainer = load_trainer(args.run, args.device)          # a wrong folder fails before the features are read
    d = int(trainer.result_.n_features)
    if args.features:
        X, ids, _ = read_features(args.features, options=read_options(args))
        what, flag, path = "the features have", "--features", args.features
    else:
        from . import featurize
        if args.texts:
            X, ids, _ = featurize.embed_texts(args.texts)
            what, flag, path = "the text embeddings have", "--texts", args.texts
        else:
            X, ids, _ = featurize.embed_images(args.images)
            what, flag, path = "the image embeddings have", "--images", args.images
    if X.shape[1] != d:
        raise CrowdDataError(f"{what} {X.shape[1]} columns but the run in {args.run} was trained on {d}.",
                             path=path, hint=f"give {flag} of the kind the run was trained on (the same feature "
                                             "columns, or the same embedding), or the run trained on these.")
    out = predict_table(trainer, X, ids, args.model)
    from .cli import csv_guard_on
    write_csv(out, args.output, guard=csv_guard_on(args))
    if not args.quiet:
        print(f"{out['model'].iloc[0] if len(out) else args.model}: {len(out)} items -> {args.output}")
    return 0
