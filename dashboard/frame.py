"""The shared frame around every page: the sidebar with the loaded data and the training status."""
from __future__ import annotations

import streamlit as st

from . import state, text, training


def sidebar() -> None:
    """Dataset summary and, while a run is going, its progress (refreshed every 2 s)."""
    with st.sidebar:
        try:
            ds = state.current()
        except Exception as exc:  # noqa: BLE001 - the sample failing must not take the app down
            st.error(f"Could not load the sample data: {text.md(exc)}")
            return
        if st.session_state.get(state.URL_ERROR):
            st.warning(text.md(st.session_state.pop(state.URL_ERROR)), icon=":material/link_off:")
        training.ensure_sample_run(ds)   # first open on the sample: register the pre-computed run (once)
        c = ds.crowd
        st.markdown(f"**Data:** {text.md(ds.name)}")
        st.caption(f"{c.n_items:,} items · {c.n_workers:,} workers · {c.n_classes} classes · "
                   f"{c.n_answers:,} answers"
                   + (f" · gold for {int(c.gold_mask.sum()):,}" if c.has_gold else "")
                   + (f" · {c.features.shape[1]} features" if c.features is not None else "")
                   + (f" · test split {len(ds.test_ids):,}" if ds.has_test else ""))
        job = state.featurize_job(ds) if ds.id else None
        if job is not None and (job.is_active or not job.applied):
            _featurize_status(ds.id)
        if training.active_job() is not None:
            _run_status()


@st.fragment(run_every=2.0)
def _run_status() -> None:
    job = training.active_job() or training.last_job()
    if job is None:
        return
    snap = job.snapshot()
    st.markdown(f"**Training run** {text.code(snap['run_id'])}: {snap['status']}")
    st.progress(min(max(snap["progress"], 0.0), 1.0), text=text.md(snap["message"]) if snap["message"] else None)


@st.fragment(run_every=1.0)
def _featurize_status(dataset_id: str) -> None:
    """Progress of building features from the item content; adds them to the dataset when done."""
    ds = state.current()
    job = state.featurize_job(ds)
    if job is None or ds.id != dataset_id:
        return
    snap = job.snapshot()
    what = "texts" if snap["kind"] == "texts" else "pictures"
    if job.is_active:
        count = f"{snap['done']:,} of {snap['total']:,} {what}" if snap["total"] else f"reading the {what}"
        st.markdown("**Building features** from " + text.md(snap["name"]))
        st.progress(snap["fraction"], text=text.md(f"{count} · {training.fmt_seconds(snap['elapsed'])}"))
        st.button("Cancel", key="featurize_cancel", on_click=job.cancel.set, icon=":material/stop:")
    elif snap["status"] == "done" and not job.applied:
        state.add_built_features(st.session_state, job)
        st.rerun(scope="app")
    elif snap["status"] == "failed" and not job.applied:
        job.applied = True
        st.session_state[state.UPLOAD_ERROR] = f"Could not build features from {snap['name']}: {snap['error']}"
        st.rerun(scope="app")
    elif snap["status"] == "cancelled" and not job.applied:
        job.applied = True
        st.rerun(scope="app")
