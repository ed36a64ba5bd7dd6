"""KD-Crowd accuracy on the real datasets: every method with the same head and preprocessing, in one run.

The data go through the same readers and the same pipeline as ``kdcrowd train``
(:mod:`kdcrowd_core.kd.pipeline`), so each KD-Crowd row is what these commands give, seed by seed
(D = ../shared/datasets):

    kdcrowd train D/labelme/answers.txt --features D/labelme/LabelMe_VGG_avg_train.npy \\
        --gold D/labelme/LabelMe_Z_train.txt \\
        --valid-features D/labelme/LabelMe_VGG_avg_valid.npy --valid-gold D/labelme/LabelMe_Z_valid.txt \\
        --test-features D/labelme/LabelMe_VGG_avg_test.npy --test-gold D/labelme/LabelMe_Z_test.txt \\
        --seed S --out runs/labelme-S
    kdcrowd train D/music_genre/mturk_answers.csv --features D/music_genre/music_genre_gold.csv \\
        --gold D/music_genre/music_genre_gold.csv --valid-from-gold 100 \\
        --test-features D/music_genre/music_genre_test.csv --test-gold D/music_genre/music_genre_test.csv \\
        --seed S --out runs/music-S

- LabelMe: train on the 1,000 annotated images (answers.txt; 512-d VGG16 features), select on the 500
  `valid` images, report the 1,188 `test` images.
- Music: 700 songs (mturk_answers.csv; 124 features from music_genre_gold.csv); per seed, 100 gold train
  songs leave training (with their answers) and are the validation data, for every method; report the 300
  test songs.

Per seed, with the same head (``KDConfig``'s classifier settings) and selection on validation data only:
classifiers on gold (upper bound), on MV labels and on DS posteriors; each peer crowd model trained alone
(``--peers``: CrowdLayer MW, CoNAL, AggNet, annot-mix, GeoCrowdNet (F)); and the KD-Crowd pipeline
(``train_kd``, the CLI's function) with its teacher, student, stage 2 and recommended model. Worker-matrix
error against the empirical confusion from the train truth; pipeline wall time.

    python benchmarks/kd_accuracy.py                   # 5 seeds, both datasets
    python benchmarks/kd_accuracy.py --quick           # 1 seed (smoke run)
    python benchmarks/kd_accuracy.py --config '{"distill": "kl"}'   # a variant of the pipeline

Writes docs/benchmarks_kd.md (a section of docs/benchmarks.md) and, with --json, the raw numbers.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kdcrowd_core.data import CrowdData  # noqa: E402
from kdcrowd_core.io import load_crowd  # noqa: E402
from kdcrowd_core.kd import KDConfig, _accuracy, _make_head, _to_t, train_crowd_model, train_student  # noqa: E402
from kdcrowd_core.kd.pipeline import hold_out_gold, read_split, train_kd  # noqa: E402

PEERS = ["crowdlayer-mw", "conal", "aggnet", "annot-mix", "geocrowdnet-f"]


def datasets_dir() -> Path:
    return Path(os.environ.get("KDCROWD_DATA", ROOT.parent / "shared" / "datasets"))


@dataclasses.dataclass
class Split:
    name: str
    data: CrowdData          # training answers, features and gold (gold only scores)
    valid: tuple             # (X, y)
    test: tuple              # (X, y, ids)


def load_labelme(d: Path, seed: int) -> Split:
    f = d / "labelme"
    data = load_crowd(str(f / "answers.txt"), gold=str(f / "LabelMe_Z_train.txt"),
                      features=str(f / "LabelMe_VGG_avg_train.npy"))
    Xv, yv, _ = read_split(str(f / "LabelMe_VGG_avg_valid.npy"), str(f / "LabelMe_Z_valid.txt"), data.classes,
                           "validation")
    return Split("LabelMe", data, (Xv, yv),
                 read_split(str(f / "LabelMe_VGG_avg_test.npy"), str(f / "LabelMe_Z_test.txt"), data.classes, "test"))


def load_music(d: Path, seed: int, n_valid: int = 100) -> Split:
    f = d / "music_genre"
    data = load_crowd(str(f / "mturk_answers.csv"), gold=str(f / "music_genre_gold.csv"),
                      features=str(f / "music_genre_gold.csv"))
    data, valid, _ = hold_out_gold(data, n_valid, seed)
    te = str(f / "music_genre_test.csv")
    return Split("Music", data, valid, read_split(te, te, data.classes, "test"))


def wm_error(T_hat: np.ndarray, data: CrowdData, min_answers: int = 20) -> float:
    """Mean over workers with >= min_answers answers of the mean L1 row error over the classes they saw
    (= ||T_hat_r - T_r||_1 / K when the worker saw every class), against the empirical confusion from gold."""
    K, R = data.n_classes, data.n_workers
    truth = data.gold
    ok = truth[data.item] >= 0
    counts = np.bincount((data.worker[ok] * K + truth[data.item[ok]]) * K + data.label[ok],
                         minlength=R * K * K).reshape(R, K, K)
    rows = counts.sum(2)
    emp = counts / np.maximum(rows[..., None], 1)
    err = np.abs(T_hat - emp).sum(2)
    seen = rows > 0
    per_worker = (err * seen).sum(1) / np.maximum(seen.sum(1), 1)
    keep = counts.sum((1, 2)) >= min_answers
    return float(per_worker[keep].mean())


def run_seed(b: Split, seed: int, base: KDConfig, peers: list[str], log=print) -> dict[str, float]:
    out: dict[str, float] = {}
    cfg = dataclasses.replace(base, seed=seed)
    t0 = time.perf_counter()
    tr = train_kd(b.data, cfg, valid=b.valid, test=b.test)   # the CLI's pipeline
    out["time/pipeline"] = time.perf_counter() - t0
    res = tr.result_
    for m in ("teacher", "student", "stage2"):
        out[f"test/kd-{m}"] = res.test_accuracy.get(m)
        out[f"valid/kd-{m}"] = res.valid_accuracy.get(m)
        out[f"train/kd-{m}"] = res.train_accuracy.get(m)
    out["test/kd-final"] = res.test_accuracy.get(res.final)
    out["valid/kd-final"] = res.valid_accuracy.get(res.final)
    out["train/kd-final"] = res.train_accuracy.get(res.final)
    for m in ("teacher", "student", "stage2"):
        out[f"pick/{m}"] = float(res.final == m)
    out["train/mv"], out["train/ds"] = res.train_accuracy.get("mv"), res.train_accuracy.get("ds")
    out["wm/ds"] = wm_error(res.worker_matrices["ds"], b.data)
    out["wm/kd-teacher"] = wm_error(res.worker_matrices["teacher"], b.data)
    out["wm/kd-stage2"] = wm_error(res.worker_matrices["stage2"], b.data)
    out["robust/small-loss"] = float(res.robust == "small-loss")

    # baselines and peers on the trainer's prepared data (same head, features, selection)
    ctx, dev = tr.ctx_, tr.device_
    Xt, yt = _to_t(b.test[0], dev), _to_t(b.test[1], dev, torch.long)
    K, N = b.data.n_classes, b.data.n_items
    all_idx = torch.arange(N, device=dev)

    def fit_clf(targets: np.ndarray, name: str):
        torch.manual_seed(seed)
        h = _make_head(cfg, b.data.features.shape[1], K).to(dev)
        h.fit_standardizer(ctx.X)
        train_student(ctx, h, _to_t(targets, dev), all_idx, cfg.epochs_student, stage=name, distill="ce",
                      robust="none")
        out[f"test/clf-{name}"] = _accuracy(h, Xt, yt)
        out[f"valid/clf-{name}"] = _accuracy(h, ctx.Xv, ctx.yv)

    eye = np.eye(K)
    fit_clf(eye[b.data.gold], "gold")
    fit_clf(eye[tr.mv_.proba_array_.argmax(1)], "mv")
    fit_clf(tr.ds_.proba_array_, "ds")
    ds_q = _to_t(tr.ds_.proba_array_, dev)
    for p in peers:
        torch.manual_seed(seed)
        t = time.perf_counter()
        m = tr.new_crowd_model(p)
        train_crowd_model(ctx, m, all_idx, cfg.epochs_teacher, "teacher", init_q=ds_q, label=p)
        out[f"time/{p}"] = time.perf_counter() - t
        out[f"test/{p}"] = _accuracy(m.classifier, Xt, yt)
        out[f"valid/{p}"] = _accuracy(m.classifier, ctx.Xv, ctx.yv)
    log(f"  {b.name} seed {seed}: gold {out['test/clf-gold']:.3f} mv {out['test/clf-mv']:.3f} "
        f"ds {out['test/clf-ds']:.3f} " + " ".join(f"{p} {out[f'test/{p}']:.3f}" for p in peers) +
        f" | KD teacher {out['test/kd-teacher']:.3f} student {out['test/kd-student']:.3f} "
        f"stage2 {out['test/kd-stage2']:.3f} final={res.final} {out['test/kd-final']:.3f} "
        f"({out['time/pipeline']:.1f}s)")
    return out


def fmt(vals: list[float | None]) -> str:
    v = np.asarray([x for x in vals if x is not None], dtype=float)
    if v.size == 0:
        return "–"
    return f"{v.mean():.3f} ± {v.std():.3f}" if v.size > 1 else f"{v.mean():.3f}"


def report(results: dict[str, list[dict]], base: KDConfig, peers: list[str], seeds, wall: float,
           overrides: dict) -> str:
    L = ["## KD-Crowd on real data (benchmarks/kd_accuracy.py)", "",
         f"Seeds {seeds[0]}-{seeds[-1]}; every classifier is the same head ({base.classifier}, hidden {base.hidden}, "
         f"depth {base.depth}, dropout {base.dropout}, norm {base.norm}, features z-scored on the training items), "
         f"{ {'adam': 'Adam', 'adamw': 'AdamW', 'radam': 'RAdam'}[base.optimizer]} lr {base.lr} ({base.schedule}); "
         f"model selection on validation data only (LabelMe: its valid split; Music: 100 gold train songs per seed, "
         f"held out of training for every method), never on test. The KD-Crowd rows come from `train_kd`, the "
         f"function `kdcrowd train` calls, on data read by the same readers (commands in the script's docstring). "
         f"Settings changed from the defaults: {json.dumps(overrides) if overrides else 'none'}.",
         "Test accuracy, mean ± std over seeds; 'valid' = the selection data's accuracy; worker-matrix error = mean "
         "over workers with >= 20 answers of the mean L1 row distance to the empirical confusion from the train truth.",
         ""]
    names = {"crowdlayer-mw": "CrowdLayer MW", "conal": "CoNAL", "aggnet": "AggNet (EM)",
             "annot-mix": "annot-mix (ECAI 2024)", "geocrowdnet-f": "GeoCrowdNet (F) (ICLR 2023)"}
    for ds, rows in results.items():
        col = lambda k, rows=rows: [r.get(k) for r in rows]
        L += [f"### {ds}", "", "| method | test accuracy | valid accuracy |", "|---|---|---|"]
        L.append(f"| classifier on gold labels (upper bound) | {fmt(col('test/clf-gold'))} | {fmt(col('valid/clf-gold'))} |")
        L.append(f"| classifier on MV labels | {fmt(col('test/clf-mv'))} | {fmt(col('valid/clf-mv'))} |")
        L.append(f"| classifier on DS posteriors | {fmt(col('test/clf-ds'))} | {fmt(col('valid/clf-ds'))} |")
        for p in peers:
            L.append(f"| {names.get(p, p)} | {fmt(col(f'test/{p}'))} | {fmt(col(f'valid/{p}'))} |")
        picks = ", ".join(f"{m} {int(sum(col(f'pick/{m}')))}" for m in ("teacher", "student", "stage2"))
        L.append(f"| KD-Crowd: teacher ({base.teacher}) | {fmt(col('test/kd-teacher'))} | {fmt(col('valid/kd-teacher'))} |")
        L.append(f"| KD-Crowd: student | {fmt(col('test/kd-student'))} | {fmt(col('valid/kd-student'))} |")
        L.append(f"| KD-Crowd: stage 2 | {fmt(col('test/kd-stage2'))} | {fmt(col('valid/kd-stage2'))} |")
        L.append(f"| **KD-Crowd: recommended model** (picked: {picks}) | **{fmt(col('test/kd-final'))}** | "
                 f"{fmt(col('valid/kd-final'))} |")
        L += ["", f"Worker-matrix error: DS {fmt(col('wm/ds'))}, KD teacher {fmt(col('wm/kd-teacher'))} → stage 2 "
              f"{fmt(col('wm/kd-stage2'))}. Train-label accuracy: MV {fmt(col('train/mv'))}, DS {fmt(col('train/ds'))}, "
              f"teacher {fmt(col('train/kd-teacher'))}, stage 2 {fmt(col('train/kd-stage2'))}. Student robust=auto "
              f"picked small-loss in {int(sum(col('robust/small-loss')))}/{len(rows)} seeds. KD-Crowd pipeline wall "
              f"time: median {np.median(col('time/pipeline')):.1f} s.", ""]
    L.append(f"Total benchmark wall time: {wall:.0f} s on {torch.get_num_threads()} thread(s).")
    return "\n".join(L) + "\n"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1 seed")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--first-seed", type=int, default=0, help="seeds are first-seed .. first-seed + seeds - 1")
    ap.add_argument("--datasets", default="labelme,music")
    ap.add_argument("--peers", default=",".join(PEERS), help="crowd models trained alone as peers ('' = none)")
    ap.add_argument("--config", default="{}", help="JSON overrides of KDConfig (the pipeline and every head)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "docs" / "benchmarks_kd.md"))
    ap.add_argument("--json", default=None, help="also write the raw per-seed numbers here")
    args = ap.parse_args(argv)
    d = datasets_dir()
    if not d.is_dir():
        print(f"real datasets not found at {d}; set KDCROWD_DATA")
        return
    torch.set_num_threads(args.threads)
    overrides = json.loads(args.config)
    base = KDConfig.from_dict({"device": "cpu", **overrides})
    peers = [p for p in args.peers.split(",") if p]
    seeds = [args.first_seed] if args.quick else list(range(args.first_seed, args.first_seed + args.seeds))
    loaders = {"labelme": load_labelme, "music": load_music}
    results: dict[str, list[dict]] = {}
    t0 = time.perf_counter()
    for name in args.datasets.split(","):
        for s in seeds:
            b = loaders[name](d, s)
            results.setdefault(b.name, []).append(run_seed(b, s, base, peers))
    wall = time.perf_counter() - t0
    text = report(results, base, peers, seeds, wall, overrides)
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps({"config": base.to_dict(), "results": results, "meta": {
            "peers": peers, "seeds": seeds, "wall": wall}}, indent=1))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
