"""Data: load annotations (and optional features, gold and a test split), see what was read."""
from __future__ import annotations

import time

import numpy as np
import pandas as pd
import streamlit as st

from dashboard import adjust, charts, state, text
from kdcrowd_core.io.options import ReadOptions
from kdcrowd_core.errors import CrowdDataError

st.title("Data")
st.caption("Upload who-labelled-what, optionally item features, gold labels, a validation and a test split — "
           "or explore the bundled sample.")

HELP = {
    "features": "One row per item: an item id column, then numeric feature columns (CSV/TSV/Parquet/NPY).",
    "gold": "Known true labels for some items: item id and label columns.",
    "valid_features": "Features of validation items with known labels: they choose each stage's best epoch "
                      "(model selection), as `--valid-features` does on the command line. Validation items that "
                      "also have answers are left out of training.",
    "valid_gold": "The validation items' true labels (item id and label columns).",
    "test_features": "Held-out items to test the trained classifiers on (not used for training).",
    "test_gold": "The test items' true labels.",
}


NONCE = "kdc_uploader_nonce"   # per kind; bumped after every upload so a box never shows a file not in use


def _key(kind: str) -> str:
    return f"upload_{kind}_{st.session_state.get(NONCE, {}).get(kind, 0)}"


def _clear_box(kind: str) -> None:
    nonce = dict(st.session_state.get(NONCE, {}))
    nonce[kind] = nonce.get(kind, 0) + 1
    st.session_state[NONCE] = nonce


def _on_upload(kind: str) -> None:
    f = st.session_state.get(_key(kind))
    if f is not None:
        ok = state.ingest(st.session_state, kind, f.getvalue(), f.name)
        if ok and kind == "content":
            _build_features()
    _clear_box(kind)   # applied: listed under the box; refused: the error says why; either way the box empties


def _build_features() -> None:
    """Item content given: build features from it (when the dataset has none of its own yet)."""
    new = st.session_state[state.DATASET]
    if new.crowd.features is None or new.sources.get("features", None) is None \
            or new.sources["features"].name.startswith("features from "):
        state.start_featurizing(new)


def _content_from_answers() -> None:
    ds_ = st.session_state[state.DATASET]
    if state.ingest(st.session_state, "content", state.read_source(ds_, "answers"), ds_.sources["answers"].name):
        _build_features()


def _use_sample() -> None:
    st.session_state.pop(state.FAILED_ANSWERS, None)
    st.session_state[state.DATASET] = state.open_dataset(state.sample_record().id)
    st.session_state.pop(state.UPLOAD_ERROR, None)
    st.session_state[state.UPLOAD_NOTICE] = "Opened the sample data."


def _open_picked(key: str) -> None:
    picked = st.session_state.get(key)
    st.session_state.pop(state.FAILED_ANSWERS, None)
    try:
        st.session_state[state.DATASET] = state.open_dataset(picked)
    except CrowdDataError as exc:
        st.session_state[state.UPLOAD_ERROR] = f"Could not open this dataset: {exc}"
        return
    st.session_state.pop(state.UPLOAD_ERROR, None)


def _rename(key: str) -> None:
    try:
        state.rename_dataset(st.session_state, st.session_state.get(key, ""))
    except ValueError as exc:
        st.session_state[state.UPLOAD_ERROR] = f"Could not rename the dataset: {exc}."


def _delete(dataset_id: str) -> None:
    state.delete_dataset(st.session_state, dataset_id)
    st.session_state[state.UPLOAD_NOTICE] = "Deleted the dataset."


def _in_use(kind: str) -> None:
    src = ds.sources.get(kind)
    if src is not None and not (ds.is_sample and kind != "answers" and src.size == 0):
        st.caption(f"In use: {text.md(src.name)}" + (f" ({src.size / 1e6:.2f} MB)" if src.size else ""))


# ---------------------------------------------------------------- datasets
state.process_pending(st.session_state)
ds = state.current()
records = state.dataset_store().list()
ids = [r.id for r in records]
if ds.id and ds.id not in ids:
    ids.insert(0, ds.id)
by_id = {r.id: r for r in records}


def _label(i: str) -> str:
    r = by_id.get(i)
    if r is None:
        return ds.name
    return (f"{r.name} — {r.n_items:,} items · {r.n_workers:,} workers · {r.n_answers:,} answers · "
            f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(r.created))}")


p1, p2 = st.columns([4, 1], vertical_alignment="bottom")
pick_key = f"dataset_pick_{ds.id}"
p1.selectbox("Dataset", ids, index=ids.index(ds.id) if ds.id in ids else 0, format_func=_label, key=pick_key,
             on_change=_open_picked, args=(pick_key,),
             help="Every dataset loaded here is kept in the data directory; the page address carries the one "
                  "open now, so a refresh, a second tab or a bookmark opens the same data.")
with p2.popover("Rename or delete", icon=":material/edit:", use_container_width=True):
    name_key = f"dataset_name_{ds.id}"
    st.text_input("Name", value=ds.name, key=name_key, max_chars=200)
    st.button("Rename", key=f"rename_{ds.id}", on_click=_rename, args=(name_key,))
    if ds.is_sample:
        st.caption("The bundled sample can't be deleted.")
    else:
        sure = st.checkbox("Yes, delete this dataset and its stored files", key=f"delete_sure_{ds.id}",
                           help="Its training runs stay in the runs list of the data directory.")
        st.button("Delete this dataset", key=f"delete_{ds.id}", icon=":material/delete:", disabled=not sure,
                  on_click=_delete, args=(ds.id,))
with st.expander(f"All datasets ({len(records)})"):
    st.dataframe(pd.DataFrame([{"name": r.name, "items": r.n_items, "workers": r.n_workers, "answers": r.n_answers,
                                "classes": r.n_classes, "created": time.strftime("%Y-%m-%d %H:%M",
                                                                                  time.localtime(r.created)),
                                "open now": "●" if r.id == ds.id else ""} for r in records]),
                 hide_index=True, key="datasets_table")

# ----------------------------------------------------------------- uploads
CONTENT_HELP = ("The texts or pictures the crowd labelled: a table with an item id column and a text column "
                "(CSV/TSV/Parquet/JSONL; a table like text, annotator, label uses each text as its item id), or a "
                ".zip of images named by item id. Features are built from it (texts: all-MiniLM-L6-v2, 384 "
                "numbers; images: EfficientNet-Lite0, 1280 numbers), so Train works without a features file; the "
                "pages show the text or a thumbnail next to item ids.")
with st.container(border=True):
    left, right = st.columns([3, 2])
    with left:
        st.file_uploader(state.KINDS["answers"], key=_key("answers"), on_change=_on_upload, args=("answers",),
                         help="Long CSV/TSV (item, worker, label), wide CSV (one column per worker), JSON/JSONL, "
                              "Parquet, or an MTurk / Toloka / Label Studio export. Columns and format are "
                              "detected; anything skipped is listed below with the reason. A new annotations "
                              "file makes a new dataset.")
        _in_use("answers")
    with right:
        st.write("")
        st.button("Use the sample data", icon=":material/dataset:", on_click=_use_sample, key="use_sample",
                  help="3000 simulated items, 8 classes, 64 features, ~60 workers, with gold and a test split.")
    with st.expander("Optional: features, gold labels, validation and test splits", expanded=False):
        cols = st.columns(2)
        for k, kind in enumerate(("features", "gold", "valid_features", "valid_gold", "test_features",
                                  "test_gold")):
            with cols[k % 2]:
                st.file_uploader(state.KINDS[kind], key=_key(kind), on_change=_on_upload, args=(kind,),
                                 help=HELP.get(kind))
                _in_use(kind)
    with st.expander("Item content: the texts or pictures of the items (optional)",
                     expanded="content" in ds.sources or ds.crowd.features is None):
        i1, i2 = st.columns([3, 2])
        with i1:
            st.file_uploader(state.KINDS["content"], key=_key("content"), on_change=_on_upload, args=("content",),
                             type=["csv", "tsv", "txt", "parquet", "jsonl", "json", "zip", "gz"], help=CONTENT_HELP)
            _in_use("content")
        with i2:
            st.write("")
            if "answers" in ds.sources and ds.id:
                st.button("Take the texts from the annotations file", key="content_from_answers",
                          on_click=_content_from_answers, icon=":material/article:",
                          help="For annotations whose item column holds the texts themselves (e.g. text, "
                               "annotator, sentiment).")
            if "content" in ds.sources:
                job = state.featurize_job(ds)
                busy = job is not None and job.is_active
                st.button("Build features from the item content", key="content_build", disabled=busy,
                          on_click=state.start_featurizing, args=(ds,), icon=":material/memory:",
                          help="Replaces the dataset's features with embeddings of the texts or pictures.")

if st.session_state.get(state.UPLOAD_ERROR):
    st.error(text.md(st.session_state[state.UPLOAD_ERROR]), icon=":material/error:")
    st.caption("The data loaded before is still in use.")
elif st.session_state.get(state.UPLOAD_NOTICE):
    st.success(text.md(st.session_state.pop(state.UPLOAD_NOTICE)), icon=":material/check_circle:")

ds = state.current()
adjust.panel(ds, st.session_state.get(state.FAILED_ANSWERS))
adjust.id_diagnosis(ds, st.session_state.get(state.ID_PENDING))
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
    chosen = ReadOptions.from_dict(ds.options).describe()
    st.markdown("**Reading settings:** " + (text.md("; ".join(chosen)) if chosen else "as detected (defaults)")
                + f" — change them under “{adjust.TITLE}”.")
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
