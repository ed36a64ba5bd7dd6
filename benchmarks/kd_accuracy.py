"""KD-Crowd accuracy on the real datasets: every method with the same head and preprocessing, in one run.

Datasets (../shared/datasets or $KDCROWD_DATA):

- LabelMe: train on the 1,000 annotated images (answers.txt, -1 = no answer; 512-d VGG16 features),
  select on the 500 `valid` images, report the 1,188 `test` images.
- Music: 700 songs in mturk_answers.csv (Input.true_label dropped), 124 features from music_genre_gold.csv;
  100 *train* songs per seed are the validation (selection) data and, by default (``--music-valid holdout``,
  since the fourth search), they leave training entirely: every method, baselines included, trains on the
  same other 600 songs and their answers.  ``--music-valid in-train`` is the earlier protocol (the validation
  songs stay in training with their crowd answers, which rewards fitting the crowd on the very items that
  select: validation ~0.80 vs test ~0.70).  ``--music-check N`` holds out N more songs that are scored
  ("check/..." keys of ``--json``) but never used for selection: an unbiased estimate next to the selected
  validation accuracy (``--labelme-check N`` does the same with N images of LabelMe's valid split).
  Report the 300 test songs.

Per seed: classifier on gold (upper bound), on MV labels, on DS posteriors; for each teacher
(CrowdLayer MW, CoNAL, AggNet): the teacher, the student with KL and with MIG^f (f = kl, pearson,
hellinger), each with and without the robust technique, and stage 2 after the default student;
worker-matrix error (vs the empirical confusion from the train truth) of DS, teacher and stage 2;
wall time of the default pipeline.  With ``rounds > 1`` (the default is 2) the students and stage 2 are
re-trained per round (round r > 1: targets from ``run_round_targets``); the student and stage-2 rows are the
last round's, and ``stage2-round<r>`` keeps each earlier round's stage 2.
Model selection only on the validation data, never on test.

    python benchmarks/kd_accuracy.py            # 5 seeds, both datasets
    python benchmarks/kd_accuracy.py --quick    # 1 seed, fewer variants (smoke run)

Writes docs/benchmarks_kd.md (a section of docs/benchmarks.md) and, with --json, the raw numbers.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kdcrowd_core.data import CrowdData  # noqa: E402
from kdcrowd_core.kd import AUTO_ROBUST_CANDIDATES, KDConfig, KDCrowd, _accuracy, _make_head, _to_t, effective_worker_matrices, train_student  # noqa: E402

GENRES = ["blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock"]


def datasets_dir() -> Path:
    return Path(os.environ.get("KDCROWD_DATA", ROOT.parent / "shared" / "datasets"))


@dataclass
class Bench:
    name: str
    data: CrowdData          # no gold: the truth only scores
    truth: np.ndarray        # (N,) train truth
    Xv: np.ndarray
    yv: np.ndarray
    Xt: np.ndarray
    yt: np.ndarray
    Xc: np.ndarray | None = None   # "check" songs: held out, scored like validation, never used for selection
    yc: np.ndarray | None = None


def load_labelme(d: Path, seed: int, n_check: int = 0) -> Bench:
    f = d / "labelme"
    ans = np.loadtxt(f / "answers.txt", dtype=np.int64)
    i, w = np.nonzero(ans >= 0)
    X = np.load(f / "LabelMe_VGG_avg_train.npy").astype(np.float32)
    data = CrowdData.from_arrays(i, w, ans[i, w], n_items=ans.shape[0], n_workers=ans.shape[1], n_classes=8,
                                 features=X)
    z = lambda s: np.loadtxt(f / f"LabelMe_Z_{s}.txt", dtype=np.int64)
    Xv, yv = np.load(f / "LabelMe_VGG_avg_valid.npy").astype(np.float32), z("valid")
    Xc = yc = None
    if n_check:   # part of the valid split scored only (never used for selection)
        c = np.random.default_rng(2000 + seed).permutation(len(yv))
        Xc, yc, Xv, yv = Xv[c[:n_check]], yv[c[:n_check]], Xv[c[n_check:]], yv[c[n_check:]]
    return Bench("LabelMe", data, z("train"), Xv, yv, np.load(f / "LabelMe_VGG_avg_test.npy").astype(np.float32),
                 z("test"), Xc, yc)


def load_music(d: Path, seed: int, n_valid: int = 100, holdout: bool = False, n_check: int = 0) -> Bench:
    f = d / "music_genre"
    m = pd.read_csv(f / "mturk_answers.csv").drop(columns=["Input.true_label"])
    data = CrowdData.from_frame(m, item="Input.song", worker="WorkerID", label="Answer.pred_label", classes=GENRES)
    g = pd.read_csv(f / "music_genre_gold.csv").set_index("id")
    feats = [c for c in g.columns if c.startswith("feature")]
    data = data.with_features(g[feats].to_numpy(np.float32), g.index)
    truth = pd.Index(GENRES).get_indexer(g.loc[data.item_ids, "class"])
    te = pd.read_csv(f / "music_genre_test.csv")
    rng = np.random.default_rng(1000 + seed)
    v = rng.choice(data.n_items, size=n_valid, replace=False)
    Xv, yv = data.features[v], truth[v]
    Xc = yc = None
    if n_check:   # a second held-out part, disjoint from the validation songs, never used for selection
        c = rng.choice(np.setdiff1d(np.arange(data.n_items), v), size=n_check, replace=False)
        Xc, yc = data.features[c], truth[c]
        v = np.concatenate([v, c])
    if holdout or n_check:   # the validation songs leave training entirely (every method trains on the other 600 songs)
        truth = np.delete(truth, v)
        data = data.without_items(data.item_ids[v])
    return Bench("Music", data, truth, Xv, yv, te[feats].to_numpy(np.float32),
                 pd.Index(GENRES).get_indexer(te["class"]), Xc, yc)


def empirical_confusion(data: CrowdData, truth: np.ndarray):
    K, R = data.n_classes, data.n_workers
    c = np.bincount((data.worker * K + truth[data.item]) * K + data.label, minlength=R * K * K).reshape(R, K, K)
    return c


def wm_error(T_hat: np.ndarray, counts: np.ndarray, min_answers: int = 20) -> float:
    """Mean over workers with >= min_answers answers of the mean L1 row error over the classes they saw
    (= ||T_hat_r - T_r||_1 / K when the worker saw every class)."""
    rows = counts.sum(2)
    emp = counts / np.maximum(rows[..., None], 1)
    err = np.abs(T_hat - emp).sum(2)                       # (R, K)
    seen = rows > 0
    per_worker = (err * seen).sum(1) / np.maximum(seen.sum(1), 1)
    keep = counts.sum((1, 2)) >= min_answers
    return float(per_worker[keep].mean())


def run_seed(b: Bench, seed: int, base: KDConfig, teachers: list[str], distills: list[str], robusts: list[str],
             log=print) -> dict[str, float]:
    out: dict[str, float] = {}
    cfg = dataclasses.replace(base, seed=seed)
    tr = KDCrowd(cfg)
    dev = torch.device(cfg.device if cfg.device != "auto" else "cpu")
    t0 = time.perf_counter()
    ctx = tr.prepare(b.data, dev, b.Xv, b.yv)
    t_prepare = time.perf_counter() - t0
    ctx.gold = None
    Xt = _to_t(b.Xt, dev)
    Xc = _to_t(b.Xc, dev) if b.Xc is not None else None
    yc = _to_t(b.yc, dev, torch.long) if b.Xc is not None else None
    yt = _to_t(b.yt, dev, torch.long)
    truth = b.truth
    counts = empirical_confusion(b.data, truth)
    N, K = b.data.n_items, b.data.n_classes
    all_idx = torch.arange(N, device=dev)
    acc_np = lambda p: float((np.asarray(p).argmax(1) == truth).mean())
    out["train/mv"] = acc_np(tr.mv_.proba_array_)
    out["train/ds"] = acc_np(tr.ds_.proba_array_)
    out["wm/ds"] = wm_error(tr.ds_.worker_matrices_, counts)

    def fit_clf(targets: np.ndarray, name: str):
        torch.manual_seed(seed)
        h = _make_head(cfg, b.data.features.shape[1], K).to(dev)
        h.fit_standardizer(ctx.X)
        train_student(ctx, h, _to_t(targets, dev), all_idx, cfg.epochs_student, stage=name, distill="ce",
                      robust="none")
        out[f"test/clf-{name}"] = _accuracy(h, Xt, yt)
        out[f"valid/clf-{name}"] = _accuracy(h, ctx.Xv, ctx.yv)
        if b.Xc is not None:
            out[f"check/clf-{name}"] = _accuracy(h, Xc, yc)

    eye = np.eye(K)
    fit_clf(eye[truth], "gold")
    fit_clf(eye[tr.mv_.proba_array_.argmax(1)], "mv")
    fit_clf(tr.ds_.proba_array_, "ds")
    log(f"  {b.name} seed {seed}: gold {out['test/clf-gold']:.3f} mv {out['test/clf-mv']:.3f} "
        f"ds {out['test/clf-ds']:.3f}")

    for teacher in teachers:
        tcfg = dataclasses.replace(cfg, teacher=teacher)
        tr.config = tcfg
        ctx.cfg = tcfg
        torch.manual_seed(seed)
        t = time.perf_counter()
        targets = tr.run_teacher(teacher)
        t_teacher = time.perf_counter() - t
        T = tr.teacher_
        out[f"test/{teacher}/teacher"] = _accuracy(T.classifier, Xt, yt)
        out[f"valid/{teacher}/teacher"] = _accuracy(T.classifier, ctx.Xv, ctx.yv)
        if b.Xc is not None:
            out[f"check/{teacher}/teacher"] = _accuracy(T.classifier, Xc, yc)
        out[f"train/{teacher}/teacher"] = acc_np(tr.teacher_q_.cpu().numpy())
        out[f"train/{teacher}/targets"] = acc_np(targets.cpu().numpy())
        out[f"wm/{teacher}/teacher"] = wm_error(effective_worker_matrices(T, ctx.X, ctx.ans).cpu().numpy(), counts)
        out[f"forget/{teacher}"] = tr.auto_forget_rate(targets)
        t_rounds = 0.0
        prev_stage2 = None
        for rnd in range(1, cfg.rounds + 1):
            if rnd > 1:   # rounds > 1: the previous stage 2 becomes the teacher (new out-of-fold targets)
                out[f"test/{teacher}/stage2-round{rnd - 1}"] = out[f"test/{teacher}/stage2"]
                out[f"valid/{teacher}/stage2-round{rnd - 1}"] = out[f"valid/{teacher}/stage2"]
                if b.Xc is not None:
                    out[f"check/{teacher}/stage2-round{rnd - 1}"] = out[f"check/{teacher}/stage2"]
                prev_stage2 = st2  # noqa: F821 (bound in round 1)
                t = time.perf_counter()
                targets = tr.run_round_targets(st2, default_student[1])  # noqa: F821
                t_rounds += time.perf_counter() - t
            default_student = None
            students = {}
            for distill in distills:
                for robust in robusts:
                    torch.manual_seed(seed)
                    t = time.perf_counter()
                    head, s = tr.run_student(targets, distill=distill, robust=robust)
                    dt = time.perf_counter() - t
                    key = f"{teacher}/student-{distill}-{robust}"
                    out[f"test/{key}"] = _accuracy(head, Xt, yt)
                    out[f"valid/{key}"] = _accuracy(head, ctx.Xv, ctx.yv)
                    if b.Xc is not None:
                        out[f"check/{key}"] = _accuracy(head, Xc, yc)
                    out[f"train/{key}"] = acc_np(s.cpu().numpy())
                    students[(distill, robust)] = (head, s, dt)
                    if distill == cfg.distill and robust == cfg.robust:
                        default_student = (head, s, dt)
            if cfg.robust == "auto":
                for distill in distills:   # what robust="auto" picks: the candidate with the best valid accuracy
                    cands = [r for r in robusts if r in AUTO_ROBUST_CANDIDATES]
                    if not cands:
                        continue
                    pick = max(cands, key=lambda r: (out[f"valid/{teacher}/student-{distill}-{r}"], -cands.index(r)))
                    for part in ("test", "train", "valid") + (("check",) if b.Xc is not None else ()):
                        out[f"{part}/{teacher}/student-{distill}-auto"] = out[f"{part}/{teacher}/student-{distill}-{pick}"]
                    out[f"pick/{teacher}/student-{distill}-auto"] = float(pick == "small-loss")
                    if distill == cfg.distill:   # "auto" trains every candidate: its time is their sum
                        h_, s_, _ = students[(distill, pick)]
                        default_student = (h_, s_, sum(students[(distill, r)][2] for r in cands))
            if default_student is None:
                torch.manual_seed(seed)
                t = time.perf_counter()
                head, s = tr.run_student(targets)
                default_student = (head, s, time.perf_counter() - t)
            torch.manual_seed(seed)
            t = time.perf_counter()
            st2, q2 = tr.run_stage2(default_student[1], teacher=prev_stage2)
            t_stage2 = time.perf_counter() - t
            t_rounds += default_student[2] + t_stage2
            out[f"test/{teacher}/stage2"] = _accuracy(st2.classifier, Xt, yt)
            out[f"valid/{teacher}/stage2"] = _accuracy(st2.classifier, ctx.Xv, ctx.yv)
            if b.Xc is not None:
                out[f"check/{teacher}/stage2"] = _accuracy(st2.classifier, Xc, yc)
            out[f"train/{teacher}/stage2"] = acc_np(q2.cpu().numpy())
            out[f"wm/{teacher}/stage2"] = wm_error(effective_worker_matrices(st2, ctx.X, ctx.ans).cpu().numpy(), counts)
        out[f"time/{teacher}/pipeline"] = t_prepare + t_teacher + t_rounds
        log(f"  {b.name} seed {seed} {teacher}: teacher {out[f'test/{teacher}/teacher']:.3f} "
            f"student {_accuracy(default_student[0], Xt, yt):.3f} stage2 {out[f'test/{teacher}/stage2']:.3f} "
            f"wm {out[f'wm/{teacher}/teacher']:.3f}->{out[f'wm/{teacher}/stage2']:.3f} "
            f"time {out[f'time/{teacher}/pipeline']:.1f}s")
    return out


def fmt(vals: list[float]) -> str:
    v = np.asarray([x for x in vals if x is not None], dtype=float)
    if v.size == 0:
        return "–"
    return f"{v.mean():.3f} ± {v.std():.3f}" if v.size > 1 else f"{v.mean():.3f}"


def report(results: dict[str, list[dict]], base: KDConfig, teachers, distills, robusts, seeds, wall,
           music_valid: str = "holdout") -> str:
    L = ["## KD-Crowd on real data (benchmarks/kd_accuracy.py)", "",
         f"Seeds: {seeds}; every classifier is the same head ({base.classifier}, hidden {base.hidden}, depth "
         f"{base.depth}, dropout {base.dropout}, features z-scored on the train items), Adam lr {base.lr}, "
         f"{base.epochs_student} epochs (teacher {base.epochs_teacher}, stage 2 {base.epochs_stage2}), "
         f"batch {base.batch_size or 'auto'}, model selection on the validation data only "
         f"(LabelMe: its valid split; Music: 100 gold train songs per seed, "
         f"{'held out of training for every method' if music_valid == 'holdout' else 'kept in training with their answers'}). "
         f"Teacher targets: {base.teacher_target}, cross-fitting folds {base.cross_fit_folds}; "
         f"default student: distill={base.distill}, robust={base.robust}, MIG^f marginal pairs={base.mig_marginal}, "
         f"students averaged={base.student_ensemble}, rounds={base.rounds} "
         f"{'(student and stage 2 rows: the last round; the targets row: round 1) ' if base.rounds > 1 else ''}"
         f"(forget rate = {'teacher-vs-MV disagreement' if base.forget_rate is None else base.forget_rate}).",
         "Test accuracy mean ± std over seeds; 'train' = accuracy of the predicted true labels of the annotated "
         "items; worker-matrix error = mean over workers with >= 20 answers of the mean L1 row distance to the "
         "empirical confusion from the train truth.", ""]
    for ds, rows in results.items():
        col = lambda k, rows=rows: [r.get(k) for r in rows]
        L += [f"### {ds}", "", "| method | test accuracy | train-label accuracy | valid accuracy (selection data) |", "|---|---|---|---|"]
        L.append(f"| classifier on gold labels (upper bound) | {fmt(col('test/clf-gold'))} | – | {fmt(col('valid/clf-gold'))} |")
        L.append(f"| classifier on MV labels | {fmt(col('test/clf-mv'))} | {fmt(col('train/mv'))} | {fmt(col('valid/clf-mv'))} |")
        L.append(f"| classifier on DS posteriors | {fmt(col('test/clf-ds'))} | {fmt(col('train/ds'))} | {fmt(col('valid/clf-ds'))} |")
        for t in teachers:
            L.append(f"| **{t}** teacher | {fmt(col(f'test/{t}/teacher'))} | {fmt(col(f'train/{t}/teacher'))} | {fmt(col(f'valid/{t}/teacher'))} |")
            L.append(f"| {t}: student targets ({'out-of-fold' if base.cross_fit_folds > 1 else 'in-sample'}) "
                     f"| – | {fmt(col(f'train/{t}/targets'))} | – |")
            rbs = robusts + (["auto"] if base.robust == "auto" and "auto" not in robusts else [])
            for dl in distills:
                for rb in rbs:
                    k = f"{t}/student-{dl}-{rb}"
                    star = " (default)" if (dl == base.distill and rb == base.robust) else ""
                    if rb == "auto":
                        star += f" (picked small-loss in {int(np.nansum([v or 0 for v in col('pick/' + k)]))}/{len(rows)} seeds)"
                    L.append(f"| {t}: student {dl}, robust={rb}{star} | {fmt(col('test/' + k))} | "
                             f"{fmt(col('train/' + k))} | {fmt(col('valid/' + k))} |")
            for r in range(1, base.rounds):
                L.append(f"| {t}: stage 2 after round {r} of {base.rounds} | {fmt(col(f'test/{t}/stage2-round{r}'))} | – | "
                         f"{fmt(col(f'valid/{t}/stage2-round{r}'))} |")
            L.append(f"| {t}: stage 2 | {fmt(col(f'test/{t}/stage2'))} | {fmt(col(f'train/{t}/stage2'))} | {fmt(col(f'valid/{t}/stage2'))} |")
        L += ["", "| worker-matrix error | " + " | ".join(["DS"] + [f"{t} teacher → stage 2" for t in teachers]) + " |",
              "|---" * (1 + len(teachers)) + "|---|"]
        L.append("| mean ± std | " + " | ".join([fmt(col("wm/ds"))] + [
            f"{fmt(col(f'wm/{t}/teacher'))} → {fmt(col(f'wm/{t}/stage2'))}" for t in teachers]) + " |")
        L += ["", "| pipeline wall time (s), prepare + teacher + default student + stage 2 | " +
              " | ".join(teachers) + " |", "|---" * (1 + len(teachers)) + "|",
              "| median | " + " | ".join(f"{np.median(col(f'time/{t}/pipeline')):.1f}" for t in teachers) + " |",
              "| forget rate (auto) | " + " | ".join(fmt(col(f'forget/{t}')) for t in teachers) + " |", ""]
    L.append(f"Total benchmark wall time: {wall:.0f} s on {torch.get_num_threads()} thread(s).")
    return "\n".join(L) + "\n"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1 seed, default teacher and student variants only")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--first-seed", type=int, default=0, help="seeds are first-seed .. first-seed + seeds - 1")
    ap.add_argument("--datasets", default="labelme,music")
    ap.add_argument("--teachers", default="crowdlayer-mw,conal,aggnet")
    ap.add_argument("--distills", default="kl,mig-kl,mig-pearson,mig-hellinger")
    ap.add_argument("--robusts", default=None, help="default: none,<the default robust technique>")
    ap.add_argument("--config", default="{}", help="JSON overrides of KDConfig")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--music-valid", choices=["in-train", "holdout"], default="holdout",
                    help="Music validation songs: stay in training with their crowd answers (in-train), or leave "
                         "training entirely, for every method (holdout)")
    ap.add_argument("--music-check", type=int, default=0,
                    help="also hold out this many further Music train songs (out of training, never used for "
                         "selection) and score every model on them ('check/...' keys of --json)")
    ap.add_argument("--labelme-check", type=int, default=0,
                    help="score (never select) on this many images of LabelMe's valid split; select on the rest")
    ap.add_argument("--out", default=str(ROOT / "docs" / "benchmarks_kd.md"))
    ap.add_argument("--json", default=None, help="also write the raw per-seed numbers here")
    ap.add_argument("--from-json", default=None,
                    help="comma-separated --json files of earlier runs (e.g. one per dataset): merge them into one report")
    args = ap.parse_args(argv)
    if args.from_json:
        results, base = {}, None
        for f in args.from_json.split(","):
            j = json.loads(Path(f).read_text())
            base = base or KDConfig.from_dict(j["config"])
            results.update(j["results"])
            meta = j.get("meta", {})
        text = report(results, base, meta.get("teachers", args.teachers.split(",")),
                      meta.get("distills", args.distills.split(",")), meta.get("robusts", ["none", "small-loss"]),
                      meta.get("seeds", list(range(args.seeds))), sum(json.loads(Path(f).read_text()).get("meta", {})
                                                                       .get("wall", 0.0) for f in args.from_json.split(",")),
                      meta.get("music_valid", "in-train"))
        Path(args.out).write_text(text)
        print(text)
        return
    d = datasets_dir()
    if not d.is_dir():
        print(f"real datasets not found at {d}; set KDCROWD_DATA")
        return
    torch.set_num_threads(args.threads)
    base = KDConfig.from_dict({"device": "cpu", **json.loads(args.config)})
    teachers = args.teachers.split(",")
    distills = args.distills.split(",")
    if args.robusts:
        robusts = args.robusts.split(",")
    elif base.robust == "auto":
        robusts = list(AUTO_ROBUST_CANDIDATES)
    else:
        robusts = sorted({"none", base.robust}, key=lambda r: r != "none")
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    if args.quick:
        seeds, teachers = [0], [base.teacher]
        distills = sorted({"kl", base.distill})
    loaders = {"labelme": lambda d_, s_: load_labelme(d_, s_, n_check=args.labelme_check),
               "music": lambda d_, s_: load_music(d_, s_, holdout=args.music_valid == "holdout",
                                                  n_check=args.music_check)}
    results: dict[str, list[dict]] = {}
    t0 = time.perf_counter()
    for name in args.datasets.split(","):
        for s in seeds:
            b = loaders[name](d, s)
            results.setdefault(b.name, []).append(run_seed(b, s, base, teachers, distills, robusts))
    wall = time.perf_counter() - t0
    text = report(results, base, teachers, distills, robusts, seeds, wall, args.music_valid)
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps({"config": base.to_dict(), "results": results, "meta": {
            "teachers": teachers, "distills": distills, "robusts": robusts, "seeds": seeds, "wall": wall,
            "music_valid": args.music_valid}}, indent=1))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
