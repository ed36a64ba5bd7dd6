"""Item quality: which labels are likely wrong, and which items to relabel next."""
from __future__ import annotations

import streamlit as st

from dashboard import quality_charts as qc
from dashboard import quality_view as qv
from dashboard import items_view, state, text, training
from kdcrowd_core import quality

st.title("Item quality")
st.caption("Every item's consensus label with a quality score: the probability that it is right "
           "(likely-wrong first). Same numbers as `kdcrowd items`; columns in docs/quality.md.")
ds = state.current()
c = ds.crowd

m1, m2, m3 = st.columns([2, 2, 2])
method = m1.selectbox("Method", qv.method_options(), format_func=qv.method_label, key=qv.METHOD_KEY)
clamp = m2.toggle("Clamp gold labels during inference", key=qv.CLAMP_KEY, disabled=not c.has_gold)
run_id = training.selected_run_id(ds.key)
run_view = None
use_run = m3.toggle("Use the trained model as a second opinion", value=run_id is not None,
                    disabled=run_id is None, key="items_use_run",
                    help="With a training run of this data: the model's probabilities join the answers "
                         "(CROWDLAB's idea), and its labels appear in the table.")
if use_run and run_id is not None:
    run = training.load_run(run_id, c, ds.key)
    if run is not None and run.record.dataset_key == ds.key:
        try:
            run_view = quality.run_predictions(run.result, c)
        except Exception as exc:  # noqa: BLE001 - a run of other data: say so, carry on without it
            st.warning(f"The run can't be used with these answers: {text.md(exc)}")
            run_view = None
use_features = st.toggle("Second opinion from the item features (out-of-fold classifier)",
                         value=c.features is not None, disabled=c.features is None, key="items_use_features",
                         help="A classifier trained on the features of the other items predicts each item: a model "
                              "that never saw the item's answers (CROWDLAB). Same as `kdcrowd items --features`.")
view_key = run_id if run_view is not None else None
if use_features and c.features is not None:
    run_view = run_view or quality.RunView()
    run_view.model_proba = qv.oof_cached(ds.key, c, method, bool(clamp))
    run_view.model_source = "out-of-fold classifier on the item features"
    view_key = f"{view_key}|oof"
if run_view is not None:
    m3.caption(f"Second opinion: {text.md(run_view.model_source)}"
               + (f" (run {text.code(run_id)})" if view_key and not view_key.startswith("None") else "") + ".")

content = qv.item_content(ds)
table = qv.item_table(ds.key, c, method, bool(clamp), view_key, run_view, content)
st.caption(f"Quality calibrated on {table.attrs.get('calibration', '')}."
           + ("" if content is not None or ds.content is not None
              else " Upload item content on the Data page to see the items here."))

f1, f2 = st.columns([3, 2])
reasons = f1.multiselect("Only items with the reason", list(quality.QUALITY_REASONS), key="items_reason")
max_q = f2.slider("Quality at most", 0.0, 1.0, 1.0, 0.05, key="items_maxq")
view = table[table["quality"] <= max_q]
for r in reasons:
    view = view[view["reason"].str.contains(r, regex=False)]
st.caption(f"{len(view):,} of {len(table):,} items match (sorted by quality, lowest first).")
cfg = {"quality": st.column_config.ProgressColumn("quality", min_value=0.0, max_value=1.0, format="%.2f"),
       "agreement": st.column_config.NumberColumn("agreement", format="%.2f"),
       "method_confidence": st.column_config.NumberColumn("method conf.", format="%.2f")}
shown = [col for col in view.columns if not col.startswith(("prob_", "model_prob_"))]
shown_view, content_cfg = items_view.with_content(view[shown].head(1000), ds)   # text or picture of the item
st.dataframe(shown_view, height=420, key="items_table", column_config={**cfg, **content_cfg})
# built on click; with many classes the prob_ columns (items x classes numbers) are a download of their own
many_classes = c.n_classes > qv.ITEM_TABLE_MAX_CLASS_COLUMNS
d1, d2 = st.columns(2)
d1.download_button("Download every item's quality (CSV)",
                   lambda: qv.csv_bytes(qv.item_table(ds.key, c, method, bool(clamp), view_key, run_view, content,
                                                      class_probas=not many_classes), index=True),
                   file_name="item_quality.csv", mime="text/csv", icon=":material/download:", on_click="ignore",
                   key="items_download", help="All items and columns, whatever the filters above"
                                              + (" (the class probabilities: the next button)." if many_classes
                                                 else ", with each class's probability."))
if many_classes:
    d2.download_button(f"… with the {c.n_classes:,} classes' probabilities (large CSV)",
                       lambda: qv.csv_bytes(qv.item_table(ds.key, c, method, bool(clamp), view_key, run_view,
                                                          content, class_probas=True), index=True),
                       file_name="item_quality_probabilities.csv", mime="text/csv", icon=":material/download:",
                       on_click="ignore", key="items_download_probs",
                       help=f"The same table with a prob_ column per class: {c.n_items * c.n_classes:,} numbers "
                            "(at 10,000 items x 1,000 classes a 214 MB file, about 15 s to build).")

if "consensus_correct" in table and table["consensus_correct"].notna().sum() >= 10 and not clamp:
    st.plotly_chart(qc.reliability({"quality": qc.quality_vs_truth(table)},
                                   title="Is the quality score calibrated? (gold items)"), key="items_calib")

# ------------------------------------------------------------------ relabel next
st.subheader("Relabel next")
st.caption("The items where one more answer is expected to help most (ActiveLab's idea, with each worker's "
           "estimated matrix); gold items are left out. Same as `kdcrowd relabel`. The download is a task list "
           "(item_id first) that MTurk's batch upload and Toloka's task upload take.")
n_free = int((~c.gold_mask).sum()) if c.has_gold else c.n_items
budget = st.number_input("How many items to relabel", min_value=1, max_value=max(1, n_free),
                         value=min(50, max(1, n_free)), step=10, key="relabel_budget")
#: the datasets whose (large) relabel ranking the user asked for in this session
asked = st.session_state.setdefault("relabel_asked", set())
if qv.relabel_on_request(c) and ds.key not in asked:
    st.caption(f"With {c.n_items:,} items and {c.n_classes:,} classes the ranking takes a few seconds: it is "
               "computed when asked (then kept for this dataset).")
    if st.button("Rank the items to relabel", key="relabel_rank", icon=":material/sort:"):
        asked.add(ds.key)
        st.rerun()
else:
    try:
        nxt = qv.relabel_table(ds.key, c, method, bool(clamp), int(budget), view_key, run_view)
    except Exception as exc:  # noqa: BLE001
        st.error(text.md(exc))
        st.stop()
    st.dataframe(nxt, height=280, key="relabel_table", column_config={
        "priority": st.column_config.NumberColumn("priority", format="%.3f"),
        "expected_gain": st.column_config.NumberColumn("expected gain", format="%.3f"),
        "quality": st.column_config.NumberColumn("quality", format="%.2f")})
    st.download_button(f"Download the relabel task list ({len(nxt)} items, CSV)",
                       qv.csv_bytes(quality.relabel_task_list(nxt, content)), file_name="relabel_next.csv",
                       mime="text/csv", icon=":material/download:", on_click="ignore", key="relabel_download")
