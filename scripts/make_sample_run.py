"""Regenerate sample_data/run/, the pre-computed KD-Crowd run the dashboard shows on first open.

    python scripts/make_sample_run.py              # writes sample_data/run/
    python scripts/make_sample_run.py --out DIR    # writes elsewhere

Trains the trainer's DEFAULT settings (``KDConfig()``, with ``seed=0`` and
``device="cpu"`` so the run is deterministic) on the bundled sample
(``sample_data/answers.csv`` + ``features.csv`` + ``gold.csv``, scored on
``test_features.csv`` / ``test_gold.csv``, where the trainer also trains the student's head on
majority-vote and on Dawid-Skene labels as baselines: ``test_accuracy`` keys ``mv`` and ``ds``),
exactly as the dashboard's Train page would with its default settings, and saves:

- ``result/``: the trainer's result (``KDResult.save``: ``result.json``, ``arrays.npz``, ``models.pt``);
- ``run.json``: what the dashboard's run store needs to register it as a finished run —
  the config dict used, the result summary, the code version, the content hashes of the
  sample files it was trained on (and the dashboard's dataset key computed from them),
  start/finish times.

Re-run it whenever the trainer's defaults or the sample data change:
``tests/dashboard/test_sample_run.py`` fails (saying so) when the bundled run is stale.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kdcrowd_core import __version__  # noqa: E402
from kdcrowd_core import io as kio  # noqa: E402
from kdcrowd_core.kd import KDConfig  # noqa: E402
from kdcrowd_core.kd.pipeline import train_kd  # noqa: E402

SAMPLE_DIR = ROOT / "sample_data"
OUT_DIR = SAMPLE_DIR / "run"
#: The settings of the bundled run: the trainer's defaults plus these.
#: ``select_holdout = 0``: the sample run trains on every answer (no label-free choice of the recommended model;
#: the sample has no validation split, so the dashboard shows no recommendation for it).
OVERRIDES = {"seed": 0, "device": "cpu", "select_holdout": 0.0}
#: Settings allowed to differ from the current defaults without the run being stale.
IGNORED_KEYS = ("seed", "device", "num_threads", "parallel_jobs", "select_holdout")
#: Settings added after runs were saved, with the value that reproduces the behaviour from before they existed:
#: a saved config without the key was trained with this value.
ADDED_SETTINGS = {"optimizer": "adam", "schedule": "constant"}
#: The sample files, by the dashboard's upload kind (same names as dashboard/state.py SAMPLE_FILES).
SAMPLE_FILES = {"answers": "answers.csv", "features": "features.csv", "gold": "gold.csv",
                "test_features": "test_features.csv", "test_gold": "test_gold.csv"}
MAX_BYTES = 2_000_000
FORMAT = 1


def digest(payload: bytes) -> str:
    """Content hash of a file: the same as ``dashboard.state.digest`` (blake2b, 128 bits, hex)."""
    return hashlib.blake2b(payload, digest_size=16).hexdigest()


def dataset_key(digests: dict[str, str]) -> str:
    """The dashboard's ``Dataset.key`` of a dataset made of files with these hashes."""
    return digest("|".join(f"{k}:{h}" for k, h in sorted(digests.items())).encode())


def sample_digests(sample_dir: Path = SAMPLE_DIR) -> dict[str, str]:
    return {k: digest((sample_dir / f).read_bytes()) for k, f in SAMPLE_FILES.items() if (sample_dir / f).is_file()}


def run_config() -> KDConfig:
    """The settings of the bundled run: ``KDConfig()`` defaults, seed 0, CPU."""
    return KDConfig.from_dict({**KDConfig().to_dict(), **OVERRIDES})


def load_sample(sample_dir: Path = SAMPLE_DIR):
    """(crowd with gold and features, test split) as the dashboard assembles the sample."""
    answers = kio.read_answers(sample_dir / SAMPLE_FILES["answers"])
    gold = kio.read_gold(sample_dir / SAMPLE_FILES["gold"])
    X, ids, names = kio.read_features(sample_dir / SAMPLE_FILES["features"])
    crowd = answers.with_gold(gold, source="gold.csv", allow_unknown_items=True)
    crowd = crowd.with_features(X, ids, feature_names=names, source="features.csv")
    Xt, tids, _ = kio.read_features(sample_dir / SAMPLE_FILES["test_features"])
    tgold = kio.read_gold(sample_dir / SAMPLE_FILES["test_gold"])
    cls = [str(c) for c in crowd.classes]
    codes = np.full(len(tids), -1, dtype=np.int64)
    pos = tids.get_indexer(tgold.index)
    lab = np.array([cls.index(str(v)) for v in tgold.to_numpy()], dtype=np.int64)
    codes[pos[pos >= 0]] = lab[pos >= 0]
    return crowd, (np.ascontiguousarray(Xt, dtype=np.float32), codes, tids)


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def dir_size(d: Path) -> int:
    return sum(p.stat().st_size for p in d.rglob("*") if p.is_file())


def make(out: Path = OUT_DIR, sample_dir: Path = SAMPLE_DIR, quiet: bool = False) -> dict:
    crowd, test = load_sample(sample_dir)
    cfg = run_config()
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    t0 = time.time()
    last = [0.0]

    def progress(ev: dict) -> None:
        if not quiet and (time.time() - last[0] > 5 or ev.get("stage") == "done"):
            last[0] = time.time()
            print(f"  {ev.get('overall_progress', 0):5.0%} {ev.get('message', '')}", flush=True)

    trainer = train_kd(crowd, cfg, test=test, callback=progress)   # the CLI's and the dashboard's pipeline
    result = trainer.result_
    t1 = time.time()
    trainer.save(tmp / "result")
    # the repository keeps this run: its arrays compressed (KDResult.save writes them plain for speed; np.load reads both)
    arrays_path = tmp / "result" / "arrays.npz"
    with np.load(arrays_path) as stored:
        arrays = {k: stored[k] for k in stored.files}
    np.savez_compressed(arrays_path, **arrays)
    digests = sample_digests(sample_dir)
    meta = {
        "format": FORMAT,
        "label": "sample run (pre-computed)",
        "dataset": "sample data (sample_data/)",
        "dataset_key": dataset_key(digests),
        "data_digests": digests,
        "config": cfg.to_dict(),
        "summary": result.summary(),
        "device": result.device,
        "started": t0,
        "finished": t1,
        "code_version": {"kdcrowd": __version__, "git_commit": git_commit()},
        "command": "python scripts/make_sample_run.py",
    }
    (tmp / "run.json").write_text(json.dumps(meta, indent=1, default=str))
    write_readme(tmp, meta)
    size = dir_size(tmp)
    if size > MAX_BYTES:
        raise SystemExit(f"the run takes {size / 1e6:.2f} MB (> {MAX_BYTES / 1e6:.0f} MB): not written")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    if not quiet:
        acc = result.train_accuracy
        print(f"wrote {out} ({size / 1e6:.2f} MB) in {t1 - t0:.0f} s; accuracy on gold: "
              + ", ".join(f"{k} {v:.3f}" for k, v in acc.items())
              + "; test: " + ", ".join(f"{k} {v:.3f}" for k, v in result.test_accuracy.items()))
    return meta


def write_readme(out: Path, meta: dict) -> None:
    """``README.md`` of the run folder: what it is, how it was made, its accuracies."""
    acc = meta["summary"].get("train_accuracy") or {}
    test = meta["summary"].get("test_accuracy") or {}
    lines = [
        "# Pre-computed KD-Crowd run on the sample data",
        "",
        "The dashboard registers this run as a finished run (\"sample run (pre-computed)\") the first",
        "time it opens on the bundled sample, so the Results page and the worker detail view are",
        "populated without training.  Generated by `python scripts/make_sample_run.py` (deterministic:",
        "the trainer's default `KDConfig()`, seed 0, CPU); `tests/dashboard/test_sample_run.py` fails",
        "when it no longer matches the trainer's defaults, the sample files or the code.",
        "",
        "- `run.json`: settings, summary, code version, hashes of the sample files it was trained on",
        "- `result/`: `KDResult.save` output (`result.json`, `arrays.npz`, `models.pt`)",
        "",
        f"Trained on {meta.get('device')} in {meta['summary'].get('timings', {}).get('total', 0):.0f} s "
        f"with kdcrowd {meta['code_version']['kdcrowd']} (commit {meta['code_version']['git_commit']}).",
        "",
        "| method | accuracy on the 300 gold items | on the 1000 test items |",
        "|---|---|---|",
    ]
    for m in ("mv", "ds", "teacher", "student", "stage2"):
        if m in acc:
            t = f"{test[m]:.1%}" if m in test else ""
            lines.append(f"| {m} | {acc[m]:.1%} | {t} |")
    (out / "README.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT_DIR, help="output folder (default sample_data/run)")
    ap.add_argument("-q", "--quiet", action="store_true")
    args = ap.parse_args(argv)
    make(args.out, quiet=args.quiet)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
