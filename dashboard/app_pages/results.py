"""Results: accuracy before and after, teacher vs student item by item, how worker matrices changed."""
from __future__ import annotations

import numpy as np
import streamlit as st

from dashboard import before_after, charts, class_paging, compare, items_view, quality_charts, state, text, training
from dashboard import quality_view as qv
from kdcrowd_core.io.csv_guard import csv_bytes

st.title("Results")
ds = state.current()

runs = training.runs_of(ds, done_only=True)
if not runs:
    st.info(f"No finished training run on this dataset (“{text.md(ds.name)}”) yet: start one on the Train page. "
            "Runs of other datasets show when you open those datasets on the Data page.", icon=":material/info:")
    if st.button("Go to Train", icon=":material/model_training:"):
        st.switch_page("app_pages/train.py")
    st.stop()

default = training.selected_run_id(ds) or runs[0].id
ids = [r.id for r in runs]
labels = {r.id: training.run_label(r) for r in runs}
run_id = st.selectbox("Run", ids, index=ids.index(default) if default in ids else 0, format_func=labels.get,
                      key="results_run")
st.session_state[training.RUN_KEY] = run_id
run = training.load_run(run_id, ds.crowd, ds.key)
if run is None:
    st.error("This run's saved result could not be found (its folder may have been deleted).")
    st.stop()
res, crowd = run.result, run.crowd
if run.record.dataset_key != ds.key:
    st.caption("The dataset has changed since this run (files added or read again); "
               "showing the run with the answers saved in it.")
if training.is_bundled(run.record):
    st.info("This is the **pre-computed sample run** that comes with kdcrowd: the trainer's default settings on "
            "the sample data, trained on the CPU by `python scripts/make_sample_run.py`. "
            "Start your own run on the Train page.", icon=":material/inventory_2:")
timings = dict(res.timings or {})
total = timings.pop("total", None)
st.caption(f"Trained on {res.device} in {training.fmt_seconds(total if total is not None else sum(timings.values()))}; "
           f"teacher {res.config.teacher}, distillation {res.config.distill}, robust {res.config.robust}.")

# ------------------------------------------------------------ before / after
st.subheader("Before and after")
test_y = None
if run.record.dataset_key == ds.key and ds.has_test and res.test_probas:
    split = ds.test_split()
    if split is not None and split[1] is not None and len(split[1]) == len(next(iter(res.test_probas.values()))):
        test_y = split[1]
rec = before_after.recommended(res)
if rec["model"]:
    st.success(f"**Recommended model: {text.md(before_after.NAMES.get(rec['model'], rec['model']))}** — "
               f"{text.md(rec['how'])}.", icon=":material/recommend:")
else:
    st.info(f"No recommended model: {text.md(rec['how'])}.", icon=":material/info:")
rows = before_after.accuracy_rows(res, crowd, test_y)
changes = before_after.changes_vs_teacher(res, crowd, test_y)
if len(rows):
    gold_rows = rows[rows["split"].str.startswith("annotated")]
    first = gold_rows if len(gold_rows) else rows[rows["split"] == rows["split"].iloc[0]]
    cols = st.columns(len(first))
    for col, r in zip(cols, first.itertuples(index=False)):
        delta = None
        ch = changes[(changes["model"] == r.method) & changes["split"].str.startswith(r.split[:8])] \
            if len(changes) else changes
        if len(ch):
            c0 = ch.iloc[0]
            delta = f"{c0['delta'] * 100:+.1f} pts vs teacher ({c0['low'] * 100:+.1f} to {c0['high'] * 100:+.1f})"
        col.metric(charts.method_label(r.method), f"{r.accuracy:.1%}", delta,
                   delta_color="normal" if len(ch) and (ch.iloc[0]["low"] > 0 or ch.iloc[0]["high"] < 0) else "off",
                   help=f"95 % interval {r.low:.1%} – {r.high:.1%} on {int(r.n):,} items" if r.n == r.n else None)
        col.caption(f"95 % interval {r.low:.1%} – {r.high:.1%}" if r.low == r.low else "no interval (item count unknown)")
    for sentence in before_after.verdict(changes):
        st.markdown(text.md(sentence))
    st.plotly_chart(quality_charts.accuracy_with_intervals(rows, title="Accuracy with 95 % intervals"),
                    key="acc_bars")
    st.caption("Annotated items: each method's labels for the items the crowd answered (the classifiers' "
               "crowd posteriors included). Test split: classifiers on held-out items"
               + (", with classifiers trained on majority-vote and Dawid-Skene labels (same head) as baselines."
                  if {"mv", "ds"} <= set(rows.loc[rows["split"].str.startswith("test"), "method"]) else
                  "; this run has no majority-vote / Dawid-Skene baselines on the test split.")
               + " Bars start at 0.")
    if len(changes):
        st.dataframe(changes.assign(model=changes["model"].map(before_after.NAMES)), hide_index=True,
                     key="fixed_broke", column_config={
                         "delta": st.column_config.NumberColumn("change vs teacher", format="%.3f"),
                         "low": st.column_config.NumberColumn("95% low", format="%.3f"),
                         "high": st.column_config.NumberColumn("95% high", format="%.3f")})
    curves = {}
    if crowd.has_gold:
        for m in before_after.CLASSIFIERS:
            if m in res.probas:
                curves[m] = quality_charts.reliability_curve(res.probas[m], crowd.gold)
    if test_y is not None:
        curves = {m: quality_charts.reliability_curve(res.test_probas[m], test_y)
                  for m in before_after.CLASSIFIERS if m in res.test_probas}
    if curves:
        st.plotly_chart(quality_charts.reliability(
            curves, title="Reliability per classifier (" + ("test split" if test_y is not None else "gold items")
            + "): on the diagonal = calibrated"), key="reliability")
    pc = compare.per_class_accuracy(res, crowd)
    if pc is not None:
        st.plotly_chart(charts.per_class_accuracy(pc, title="Accuracy per class on the annotated items with gold"),
                        key="acc_class")
else:
    st.caption("No gold labels: accuracy can't be measured. How often the methods agree and how confident "
               "each one is:")
c1, c2 = st.columns(2)
with c1:
    st.plotly_chart(charts.method_agreement_heatmap(compare.method_agreement(res)), key="agree")
with c2:
    if crowd.has_gold:
        pick = st.selectbox("Confidence of", [m for m in compare.METHODS if m in res.probas], index=0,
                            format_func=charts.method_label, key="conf_method")
        P = np.asarray(res.probas[pick])
        gm = crowd.gold_mask
        st.plotly_chart(quality_charts.confidence_distribution(
            qv.confidence_bins(P[gm].max(1), P[gm].argmax(1) == crowd.gold[gm]),
            title=f"{charts.method_label(pick)}: confidence on gold items, right vs wrong"), key="conf")
    else:
        st.plotly_chart(charts.confidence_histograms(compare.confidences(res)), key="conf")

# ------------------------------------------------------- teacher vs student
st.subheader("Teacher vs student")
flips = compare.flip_counts(res, "teacher", "student")
n_diff = int(flips.sum() - np.trace(flips))
st.caption(f"The student changed the teacher's label on {n_diff:,} of {int(flips.sum()):,} items "
           f"({n_diff / max(int(flips.sum()), 1):.1%}).")
f1, f2 = st.columns([2, 3])
with f1:
    flip_codes, flip_classes = class_paging.picker(res.classes, flips.sum(axis=1), key="flip_class_page",
                                                   what="label flips")
    st.plotly_chart(charts.flip_matrix(class_paging.block(flips, flip_codes), flip_classes), key="flips")
with f2:
    diff = compare.differing_items(res, crowd)
    g1, g2, g3 = st.columns(3)
    cls = [str(c) for c in res.classes]
    t_f = g1.multiselect("Teacher label", cls, key="diff_teacher")
    s_f = g2.multiselect("Student label", cls, key="diff_student")
    only_gold = g3.toggle("Only items with gold", key="diff_gold", disabled="gold" not in diff)
    view = diff
    if t_f:
        view = view[view["teacher"].isin(t_f)]
    if s_f:
        view = view[view["student"].isin(s_f)]
    if only_gold and "gold" in view:
        view = view[view["gold"] != ""]
    if "gold" in view and (view["gold"] != "").any():
        known = view[view["gold"] != ""]
        st.caption(f"On the {len(known):,} of these items with gold: teacher right "
                   f"{(known['teacher'] == known['gold']).mean():.0%}, student right "
                   f"{(known['student'] == known['gold']).mean():.0%}.")
    first = [c for c in ("gold", "teacher", "student", "stage2") if c in view.columns]
    view = view[first + [c for c in view.columns if c not in first]]
    view, content_cfg = items_view.with_content(view, ds)   # the item's text or picture, when given
    st.dataframe(view, height=380, key="diff_table", column_config={
        "teacher_confidence": st.column_config.ProgressColumn("teacher conf.", min_value=0, max_value=1, format="%.2f"),
        "student_confidence": st.column_config.ProgressColumn("student conf.", min_value=0, max_value=1, format="%.2f"),
        **content_cfg})

# ------------------------------------------------------- worker matrices
st.subheader("How the worker matrices changed after stage 2")
chg = compare.matrix_change(res, "teacher", "stage2")
if chg is not None:
    w1, w2 = st.columns([3, 2])
    with w1:
        wm = res.worker_matrices
        st.plotly_chart(charts.matrix_change_scatter(np.asarray(wm["teacher"]), np.asarray(wm["stage2"]),
                                                     res.worker_ids, crowd.answers_per_worker()), key="wchange")
    with w2:
        st.caption("Workers whose matrix changed most (L1 distance per row, 0 = unchanged, 2 = completely different):")
        top = chg.sort_values("change", ascending=False).head(15)
        top = top[["change"] + [c for c in top.columns if c != "change"]]
        st.dataframe(top, height=360, key="wchange_table", column_config={
            "change": st.column_config.NumberColumn("change", format="%.3f"),
            "teacher_accuracy": st.column_config.NumberColumn("teacher diag.", format="%.3f"),
            "stage2_accuracy": st.column_config.NumberColumn("stage-2 diag.", format="%.3f")})
else:
    st.caption("This run has no teacher/stage-2 worker matrices.")

# ---------------------------------------------------------------- downloads
st.subheader("Downloads")
an = state.analysis(ds) if run.record.dataset_key == ds.key else None
d1, d2, d3, d4 = st.columns(4)
d1.download_button("Refined labels (CSV)", csv_bytes(res.labels_frame(), index=True), file_name=f"labels_{run_id}.csv",
                   mime="text/csv", icon=":material/download:", on_click="ignore")
d2.download_button("Worker report (CSV)",
                   csv_bytes(compare.worker_report(res, crowd, an.workers if an is not None else None), index=True),
                   file_name=f"workers_{run_id}.csv", mime="text/csv", icon=":material/download:", on_click="ignore")
d3.download_button("Worker matrices (JSON)", compare.matrices_json(res).encode(), file_name=f"matrices_{run_id}.json",
                   mime="application/json", icon=":material/download:", on_click="ignore")
d4.download_button("Run summary (JSON)", compare.summary_json(res, run.record).encode(),
                   file_name=f"summary_{run_id}.json", mime="application/json", icon=":material/download:",
                   on_click="ignore")
e1, e2 = st.columns(2)
model_zip = before_after.model_zip(run.record.result_dir)
if model_zip is not None:
    e1.download_button("Trained model (zip)", model_zip, file_name=f"model_{run_id}.zip", mime="application/zip",
                       icon=":material/download:", on_click="ignore", key="model_download",
                       help="The run's result folder (result.json, arrays.npz, models.pt): unzip it and run "
                            "`kdcrowd predict FOLDER --features NEW.csv -o OUT.csv` on new items (weights are "
                            "loaded with weights_only=True).")
preds = before_after.test_predictions(res, rec["model"])
if preds is not None:
    e2.download_button(f"Test-split predictions ({len(preds):,} items, CSV)", csv_bytes(preds),
                       file_name=f"predictions_{run_id}.csv", mime="text/csv", icon=":material/download:",
                       on_click="ignore", key="predictions_download")
