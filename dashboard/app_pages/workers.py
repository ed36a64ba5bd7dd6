"""Workers: each worker's confusion matrix, a ranking, and one worker in detail."""
from __future__ import annotations

import numpy as np
import streamlit as st

from dashboard import analysis as an
from dashboard import charts, class_paging, state, training
from dashboard import quality_view as qv
from kdcrowd_core import quality
from kdcrowd_core.inference import matrices

PAGE_SIZE = 24
SORTS = {"estimated accuracy": "accuracy", "activity (answers)": "answers",
         "spammer score (most informative first)": "spammer_score", "agreement with consensus": "agreement",
         "time on task (median seconds)": "median_seconds"}

st.title("Workers")
ds = state.current()
c = ds.crowd
a = state.analysis(ds)
seconds = qv.work_seconds(ds)      # MTurk's WorkTimeInSeconds per worker, when the answers file has it
st.caption(f"Confusion matrices estimated by {a.method.replace('_', ' ').title()} "
           "(row = true class, column = the worker's answer; a strong diagonal means a reliable worker).")

# ----------------------------------------------------------------- filters
f1, f2, f3, f4 = st.columns([2, 2, 2, 1])
sort_label = f1.selectbox("Sort by", [k for k, v in SORTS.items() if v != "median_seconds" or seconds is not None],
                          key="workers_sort")
max_answers = int(a.workers["answers"].max())
min_answers = f2.number_input("Minimum answers", min_value=0, max_value=max_answers, value=min(5, max_answers),
                              step=1, key="workers_min")
search = f3.text_input("Search worker id", key="workers_search", placeholder="e.g. W12")
ascending = f4.toggle("Ascending", key="workers_asc", value=False)
table = an.filter_workers(qv.with_work_seconds(a.workers, seconds), min_answers=min_answers, search=search, sort_by=SORTS[sort_label],
                          ascending=ascending)

if table.empty:
    st.warning("No worker matches these filters.")
    st.stop()

# -------------------------------------------------------------------- grid
n_pages = max(1, int(np.ceil(len(table) / PAGE_SIZE)))
p1, p2 = st.columns([1, 4])
page = p1.number_input(f"Page (of {n_pages})", min_value=1, max_value=n_pages, value=1, step=1, key="workers_page")
shown = table.iloc[(page - 1) * PAGE_SIZE: page * PAGE_SIZE]
p2.caption(f"{len(table):,} workers match; showing {len(shown)} "
           f"({(page - 1) * PAGE_SIZE + 1}–{(page - 1) * PAGE_SIZE + len(shown)}).")
codes = c.worker_ids.get_indexer(shown.index)
# many classes: one page of classes at a time (never 24 full K x K matrices in one figure)
class_codes, shown_classes = class_paging.picker(c.classes, c.label_counts(), key="workers_class_page")
grid = matrices.block(a.ds_matrices, codes, class_codes)
subtitles = [f"{charts._short(w, 16)}<br>n={int(r.answers)} · acc {r.accuracy:.2f}" for w, r in shown.iterrows()]
st.plotly_chart(charts.worker_matrix_grid(grid, shown.index, shown_classes, subtitles=subtitles,
                                          cols=6, title="Worker confusion matrices"), key="worker_grid")

# ----------------------------------------------------------------- ranking
st.subheader("Ranking")
st.caption("answers = how many items the worker labelled; estimated accuracy = prior-weighted diagonal of the "
           "estimated matrix; agreement = share of answers equal to the consensus label; spammer score = how "
           "informative the matrix is (0 = a spammer whose answers ignore the item — random or always the same "
           "label; 1 = perfectly informative); top label share = share of the worker's answers that are its most "
           "frequent label; gold accuracy = accuracy on the gold items it answered (empty without gold)"
           + ("; time on task = the median of the worker's `WorkTimeInSeconds` (MTurk: seconds per assignment)."
              if seconds is not None else "."))
cols_cfg = {
    "accuracy": st.column_config.ProgressColumn("estimated accuracy", min_value=0.0, max_value=1.0, format="%.2f"),
    "agreement": st.column_config.ProgressColumn("agreement", min_value=0.0, max_value=1.0, format="%.2f"),
    "spammer_score": st.column_config.NumberColumn("spammer score", format="%.2f"),
    "top_label_share": st.column_config.NumberColumn("top label share", format="%.2f"),
    "gold_answers": st.column_config.NumberColumn("gold answers"),
    "gold_accuracy": st.column_config.NumberColumn("gold accuracy", format="%.2f"),
    "median_seconds": st.column_config.NumberColumn("time on task (median s)", format="%.0f"),
}
st.dataframe(table, column_config=cols_cfg, height=320, key="workers_table")
st.caption(f"The table follows the filters above ({len(table):,} of {len(a.workers):,} workers); the downloads "
           "below always hold every worker.")

# ----------------------------------------------------------------- actions
st.subheader("Flags and actions")
st.caption("Accuracy with its 95 % credible interval (posterior of the worker's matrix): a worker with 5 answers "
           "gets a wide one. A worker is flagged for blocking only when the whole interval is below the threshold, "
           "or when its spammer score is; a bonus when the whole interval is above. Same as `kdcrowd workers`.")
t1, t2, t3, t4 = st.columns(4)
th = quality.WorkerThresholds(
    min_answers=int(t1.number_input("Min. answers to judge", 0, 100000, 10, key="flag_min_answers")),
    block_accuracy=float(t2.slider("Block below accuracy", 0.0, 1.0, 0.5, 0.05, key="flag_block_acc")),
    block_spammer=float(t3.slider("Block below spammer score", 0.0, 1.0, 0.1, 0.05, key="flag_block_spam")),
    bonus_accuracy=float(t4.slider("Bonus above accuracy", 0.0, 1.0, 0.85, 0.05, key="flag_bonus_acc")))
clamp = st.toggle("Clamp gold labels during inference", key="workers_clamp_gold", disabled=not c.has_gold,
                  help="Like `kdcrowd workers --clamp-gold`: the gold labels are used as known truths. Off (the "
                       "default, as in the CLI): gold only measures each worker's gold accuracy.")
if clamp and c.has_gold:
    lab = qv.labels_cached(ds.key, c, "default", True)
    report = qv.worker_report_cached(ds.key + ":clamped", c, lab.proba, lab.matrices, th, seconds)
else:
    report = qv.worker_report_cached(ds.key, c, a.ds_proba, a.ds_matrices, th, seconds)
n_block, n_bonus = int((report["action"] == "block").sum()), int((report["action"] == "bonus").sum())
k1, k2, k3 = st.columns(3)
k1.metric("Workers to block", f"{n_block:,}")
k2.metric("Workers for a bonus", f"{n_bonus:,}")
k3.metric("Too few answers to judge", f"{int(report['flags'].str.contains('too few').sum()):,}")
flagged = report[report["action"] != ""]
st.dataframe(flagged, height=min(320, 40 + 35 * max(len(flagged), 1)), key="workers_flagged", column_config={
    "accuracy": st.column_config.NumberColumn("accuracy", format="%.2f"),
    "accuracy_low": st.column_config.NumberColumn("95% low", format="%.2f"),
    "accuracy_high": st.column_config.NumberColumn("95% high", format="%.2f"),
    "median_seconds": st.column_config.NumberColumn("time on task (median s)", format="%.0f")})
platform = st.radio("Export for", ["mturk", "toloka"], horizontal=True, key="flag_platform",
                    format_func={"mturk": "Amazon MTurk", "toloka": "Toloka"}.get)
x1, x2, x3 = st.columns(3)
x1.download_button(f"Full worker report ({len(report):,} workers, CSV)", qv.csv_bytes(report, index=True),
                   file_name="worker_report.csv", mime="text/csv", icon=":material/download:", on_click="ignore",
                   key="workers_report_download")
x2.download_button(f"Block list ({n_block}, {platform})", qv.csv_bytes(quality.block_list(report, platform)),
                   file_name=f"block_{platform}.csv", mime="text/csv", icon=":material/block:", on_click="ignore",
                   key="workers_block_download")
x3.download_button(f"Bonus list ({n_bonus}, {platform})", qv.csv_bytes(quality.bonus_list(report, platform)),
                   file_name=f"bonus_{platform}.csv", mime="text/csv", icon=":material/payments:",
                   on_click="ignore", key="workers_bonus_download")

# ------------------------------------------------------------------ detail
st.subheader("One worker in detail")
worker = st.selectbox("Worker", list(table.index), key="workers_detail", format_func=str)
w = int(c.worker_ids.get_loc(worker))
row = a.workers.loc[worker]
d1, d2, d3, d4 = st.columns(4)
d1.metric("Answers", f"{int(row['answers']):,}")
d2.metric("Estimated accuracy", f"{row['accuracy']:.1%}")
d3.metric("Agreement with consensus", f"{row['agreement']:.1%}")
d4.metric("Spammer score", f"{row['spammer_score']:.2f}")

mats = {"ds": matrices.block(a.ds_matrices, [w])[0]}
run_id = training.selected_run_id(ds)
run = training.load_run(run_id, c, ds.key) if run_id else None
if (run is not None and training.belongs(run.record, ds) and len(run.result.worker_ids) == c.n_workers
        and str(run.result.worker_ids[w]) == str(worker)):
    wm = run.result.worker_matrices
    for name in ("teacher", "stage2"):
        if name in wm:
            mats[name] = matrices.block(wm[name], [w])[0]
counts = None
emp = an.empirical_confusion_counts(c, w)
if emp is not None and emp.sum() > 0:
    mats["empirical"] = an.row_normalise(emp)
    counts = {"empirical": emp}
if run is None:
    st.caption("Train a model (Train page) to see the teacher's and the stage-2 matrices next to this one.")
if class_codes is not None:
    mats = {k: class_paging.block(v, class_codes) for k, v in mats.items()}
    counts = None if counts is None else {k: class_paging.block(v, class_codes) for k, v in counts.items()}
st.plotly_chart(charts.matrices_side_by_side(mats, shown_classes, counts=counts, title=f"Worker {worker}"),
                key="worker_detail")
if emp is not None and "empirical" not in mats:
    st.caption("This worker answered no gold item: no empirical matrix.")
