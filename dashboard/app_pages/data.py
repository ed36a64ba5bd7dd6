"""Data: load annotations (and optional features, gold and a test split), see what was read."""
from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from dashboard import charts, state, text

st.title("Data")
st.caption("Upload who-labelled-what, optionally item features, gold labels and a test split — "
           "or explore the bundled sample.")


NONCE = "kdc_uploader_nonce"   # bumped to empty the upload boxes when the sample is chosen


def _key(kind: str) -> str:
    return f"upload_{kind}_{st.session_state.get(NONCE, 0)}"


def _on_upload(kind: str) -> None:
    f = st.session_state.get(_key(kind))
    if f is not None:
        state.ingest(st.session_state, kind, f.getvalue(), f.name)


def _use_sample() -> None:
    st.session_state[NONCE] = st.session_state.get(NONCE, 0) + 1
    st.session_state[state.DATASET] = state.load_sample()
    st.session_state.pop(state.UPLOAD_ERROR, None)
    st.session_state[state.UPLOAD_NOTICE] = "Loaded the sample data."


# ----------------------------------------------------------------- uploads
state.process_pending(st.session_state)
with st.container(border=True):
    left, right = st.columns([3, 2])
    with left:
        st.file_uploader(state.KINDS["answers"], key=_key("answers"), on_change=_on_upload, args=("answers",),
                         help="Long CSV/TSV (item, worker, label), wide CSV (one column per worker), JSON/JSONL, "
                              "Parquet, or an MTurk / Toloka / Label Studio export. Columns and format are "
                              "detected; anything skipped is listed below with the reason.")
    with right:
        st.write("")
        st.button("Use the sample data", icon=":material/dataset:", on_click=_use_sample,
                  help="3000 simulated items, 8 classes, 64 features, ~60 workers, with gold and a test split.")
    with st.expander("Optional: features, gold labels, test split", expanded=False):
        cols = st.columns(2)
        for k, kind in enumerate(("features", "gold", "test_features", "test_gold")):
            with cols[k % 2]:
                st.file_uploader(state.KINDS[kind], key=_key(kind), on_change=_on_upload, args=(kind,))

if st.session_state.get(state.UPLOAD_ERROR):
    st.error(text.md(st.session_state[state.UPLOAD_ERROR]), icon=":material/error:")
    st.caption("The data loaded before is still in use.")
elif st.session_state.get(state.UPLOAD_NOTICE):
    st.success(text.md(st.session_state.pop(state.UPLOAD_NOTICE)), icon=":material/check_circle:")

ds = state.current()
state.prefetch(ds)   # the Workers/Disagreement numbers start computing now
c = ds.crowd
for note in ds.notes:
    st.info(text.md(note), icon=":material/info:")

# ------------------------------------------------------------------ counts
st.subheader(text.md(ds.name))
m = st.columns(6)
m[0].metric("Items", f"{c.n_items:,}")
m[1].metric("Workers", f"{c.n_workers:,}")
m[2].metric("Classes", c.n_classes)
m[3].metric("Answers", f"{c.n_answers:,}")
m[4].metric("Gold labels", f"{int(c.gold_mask.sum()):,}" if c.has_gold else "none")
m[5].metric("Test items", f"{len(ds.test_ids):,}" if ds.has_test else "none",
            help="Held-out items with features (and gold) for testing the trained classifiers.")

# --------------------------------------------------------- what was read
with st.expander("What was read, what was skipped", expanded=any(r.skipped for r in ds.reports)):
    rows = []
    for kind, src in ds.sources.items():
        rows.append({"file": src.name, "kind": state.KINDS[kind].split(" (")[0],
                     "size": f"{src.size / 1e6:.2f} MB" if src.size else "—"})
    if rows:
        st.dataframe(pd.DataFrame(rows), hide_index=True)
    for rep in ds.reports:
        st.code(rep.to_text(), language=None)
        if rep.skipped:
            st.dataframe(pd.DataFrame([{"skipped rows": s["count"], "reason": s["reason"],
                                        "examples": "; ".join(s.get("examples", []))} for s in rep.skipped]),
                         hide_index=True)
    if c.features is not None:
        st.write(f"Features: {c.features.shape[1]} columns for {c.n_items:,} items.")
    if ds.has_test:
        y = ds.test_split()[1]
        st.write(f"Test split: {len(ds.test_ids):,} items"
                 + (f", gold for {int((y >= 0).sum()):,}." if y is not None else " (no gold)."))

# ----------------------------------------------------------------- charts
col1, col2 = st.columns(2)
with col1:
    st.plotly_chart(charts.count_distribution(c.answers_per_item(), title="Answers per item",
                                              what="answers per item", per="items"), key="hist_items")
with col2:
    st.plotly_chart(charts.count_distribution(c.answers_per_worker(), title="Answers per worker",
                                              what="answers per worker", per="workers"), key="hist_workers")
gold_counts = np.bincount(c.gold[c.gold_mask], minlength=c.n_classes) if c.has_gold else None
st.plotly_chart(charts.class_balance(c.classes, c.label_counts(), gold_counts=gold_counts,
                                     title="Class balance of the answers" + (" and the gold labels" if c.has_gold else "")),
                key="class_balance")

with st.expander("First answers"):
    n = min(20, c.n_answers)
    st.dataframe(pd.DataFrame({"item": c.item_ids.take(c.item[:n]), "worker": c.worker_ids.take(c.worker[:n]),
                               "label": c.classes.take(c.label[:n])}), hide_index=True)
