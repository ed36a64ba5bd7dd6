"""Train: choose the settings, start KD-Crowd in the background, follow it live, reopen past runs."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import charts, state, text, training
from kdcrowd_core.kd import progress

STAGE_NAMES = {"mv": "Majority vote", "ds": "Dawid-Skene", "teacher": "Teacher", "student": "Student (stage 1)",
               "stage2": "Stage 2"}

st.title("Train")
ds = state.current()
c = ds.crowd
kd = training.kd_module()
defaults = training.default_config()
opts = training.choices()
gpu = training.gpu_name()

# ---------------------------------------------------------------- settings
with st.form("train_settings", border=True):
    st.markdown("**Settings**")
    s1, s2, s3, s4 = st.columns(4)

    def _pick(col, label, key, options, help=None):
        d = defaults.get(key)
        return col.selectbox(label, options, index=options.index(d) if d in options else 0, key=f"cfg_{key}",
                             help=help)

    teacher = _pick(s1, "Teacher (crowd model)", "teacher", opts["teacher"],
                    "The transition-matrix crowd model trained first on the answers.")
    distill = _pick(s2, "Distillation loss", "distill", opts["distill"],
                    "How the student learns from the teacher: MIG losses reward shared information; "
                    "kl copies the teacher (with temperature).")
    robust = _pick(s3, "Robust technique", "robust", opts["robust"],
                   "Noise-model-free robust learning for the student.")
    devices = ["auto", "cpu"] + (["cuda"] if gpu else [])
    device = s4.selectbox("Device", devices, key="cfg_device")
    s4.caption(f"GPU: {gpu}" if gpu else "No GPU found: training runs on the CPU.")
    e1, e2, e3, e4 = st.columns(4)
    ep_t = e1.number_input("Teacher epochs", 1, 1000, int(defaults.get("epochs_teacher") or 30), key="cfg_ep_t")
    ep_s = e2.number_input("Student epochs", 1, 1000, int(defaults.get("epochs_student") or 30), key="cfg_ep_s")
    ep_2 = e3.number_input("Stage-2 epochs", 1, 1000, int(defaults.get("epochs_stage2") or 30), key="cfg_ep_2")
    seed = e4.number_input("Seed", 0, 2**31 - 1, int(defaults.get("seed") or 0), key="cfg_seed")
    with st.expander("More settings"):
        m1, m2, m3, m4 = st.columns(4)
        lr = m1.number_input("Learning rate", 1e-6, 1.0, float(defaults.get("lr") or 1e-3), format="%.5f",
                             key="cfg_lr")
        bs = m2.number_input("Batch size (0 = automatic)", 0, 65536, int(defaults.get("batch_size") or 0),
                             key="cfg_bs")
        hidden = m3.number_input("Hidden units", 1, 4096, int(defaults.get("hidden") or 128), key="cfg_hidden")
        lam = m4.number_input("Stage-2 λ", 0.0, 100.0, float(defaults.get("stage2_lambda") or 1.0), key="cfg_lam")
        n1, n2, n3, _ = st.columns(4)
        folds = n1.number_input("Cross-fit folds (0/1 = off)", 0, 20, int(defaults.get("cross_fit_folds") or 0),
                                key="cfg_folds", help="k > 1: each item's teacher target comes from a teacher "
                                                      "trained without it (k extra teachers: slower, more honest).")
        use_gold = n2.toggle("Train with the gold labels", value=bool(defaults.get("use_gold", False)),
                             key="cfg_use_gold", help="Off: gold labels only measure accuracy.")
        n_gold = int(c.gold_mask.sum()) if c.has_gold else 0
        vshare = n3.number_input(
            "Gold for model selection (%)", 0, int(training.MAX_VALID_SHARE * 100), 0, step=10,
            key="cfg_valid_share", disabled=n_gold < 2 or ds.has_valid,
            help="Hold this share of the gold items out of training and use them as validation data: every "
                 "stage keeps its best epoch on them and robust=auto picks the better student. The other gold "
                 "items still measure accuracy. 0 = no model selection (each stage keeps its last epoch)."
                 + ("" if n_gold >= 2 else " Needs gold labels for at least 2 items.")
                 + (" Not used: the uploaded validation split selects the models." if ds.has_valid else ""))
        st.caption("Runs are stored in the data directory: "
                   + text.code(training.home())
                   + ". It is set when the server starts (`kdcrowd dashboard --data-dir DIR` or `$KDCROWD_HOME`), "
                     "not from this page.")
    problems = []
    if kd is None:
        problems.append("The trainer (kdcrowd_core.kd) is not available in this installation.")
    if c.features is None:
        problems.append("Training needs item features: upload a features file on the Data page.")
    if training.active_job() is not None:
        problems.append("A run is already going: wait for it or cancel it.")
    submitted = st.form_submit_button("Start training", type="primary", icon=":material/play_arrow:",
                                      disabled=bool(problems))
for p in problems:
    st.info(p, icon=":material/info:")

if submitted and not problems:
    cfg = dict(defaults)
    cfg.update(teacher=teacher, distill=distill, robust=robust, device=device, epochs_teacher=int(ep_t),
               epochs_student=int(ep_s), epochs_stage2=int(ep_2), seed=int(seed), lr=float(lr),
               batch_size=int(bs), hidden=int(hidden), stage2_lambda=float(lam))
    if "cross_fit_folds" in defaults:
        cfg["cross_fit_folds"] = int(folds)
    if "use_gold" in defaults:
        cfg["use_gold"] = bool(use_gold)
    try:
        training.start(ds, cfg, valid_share=float(vshare) / 100.0)
    except Exception as exc:  # noqa: BLE001 - e.g. a bad setting rejected by the trainer
        st.error(f"Could not start the run: {text.md(exc)}")
    else:
        st.session_state["train_pick"] = st.session_state[training.RUN_KEY]   # "Open a run" follows the new run
        st.rerun()


# ------------------------------------------------------------ live progress
def _show_progress(job) -> None:
    snap = job.snapshot()
    status = snap["status"]
    st.markdown(f"**Run** {text.code(snap['run_id'])} — {'finished' if status == 'done' else status}"
                + (" (cancelling…)" if snap["cancel_requested"] and job.is_active else ""))
    t1, t2, t3 = st.columns(3)
    t1.metric("Elapsed", training.fmt_seconds(snap["elapsed"]))
    t2.metric("Estimated remaining", training.fmt_seconds(snap["remaining"]) if job.is_active else "—")
    t3.metric("Overall", f"{snap['progress']:.0%}")
    finished = not job.is_active
    all_bars = progress.bars(snap["events"], finished=finished)
    if finished and all_bars:
        st.caption(f"{len(all_bars)} steps (one bar per stage, cross-fit fold and round), all finished.")
    shown = list(all_bars.items())
    if not finished and len(shown) > 12:        # while running: the last finished ones and the current one
        st.caption(f"{len(shown) - 12} earlier steps finished.")
        shown = shown[-12:]
    with st.expander("Every step", expanded=not finished) if finished else st.container():
        for label, bar in shown:
            what = progress.describe(bar) or ("done" if bar["done"] else "")
            st.progress(min(max(bar["fraction"], 0.0), 1.0), text=f"{text.md(label)}: {text.md(what)}")
    for ev in snap["events"]:
        if progress.is_note(ev):
            st.caption(text.md(ev.get("message", "")))
    if any(e.get("epoch") for e in snap["events"]):
        st.plotly_chart(charts.training_curves(
            snap["events"], title="Live training curves" if job.is_active else "Training curves"),
                        key=f"curves_{snap['run_id']}")
    if job.is_active:
        st.button("Cancel the run", icon=":material/stop:", key=f"cancel_{snap['run_id']}",
                  on_click=training.manager().cancel, args=(snap["run_id"],))
    if status == "failed":
        st.error(f"The run failed: {text.md(snap['error'])}")
    elif status == "cancelled" and snap["error"]:
        st.warning(text.md(snap["error"]), icon=":material/stop_circle:")


job = training.active_job()
if job is not None:
    @st.fragment(run_every=1.0)
    def _live() -> None:
        j = training.manager().get(job.run_id)
        _show_progress(j)
        if not j.is_active:
            st.rerun(scope="app")   # refresh the whole page (runs table, other pages' state) once it ends
    with st.container(border=True):
        _live()

# ------------------------------------------------------------------- runs
st.subheader("Runs")
runs = training.store().list(limit=100)
if not runs:
    st.caption("No run yet. Runs are stored in " + text.code(training.home()) + ".")
    st.stop()
table = pd.DataFrame([{
    "run": f"{r.id} (pre-computed)" if training.is_bundled(r) else r.id, "status": r.status, "dataset": r.dataset, "started": training.fmt_time(r.started),
    "duration": training.fmt_seconds(r.duration), "device": r.device or "",
    "teacher": r.config.get("teacher", ""), "distill": r.config.get("distill", ""),
    "stage-2 accuracy": ((r.summary or {}).get("train_accuracy") or {}).get("stage2"),
} for r in runs])
st.dataframe(table, hide_index=True, height=min(300, 40 + 35 * len(table)), key="runs_table",
             column_config={"stage-2 accuracy": st.column_config.NumberColumn(format="%.3f")})
st.caption(f"Stored in {text.code(training.store().path)}.")

ids = [r.id for r in runs]
cur = st.session_state.get(training.RUN_KEY)
names = {r.id: f"{training.run_label(r)} ({r.status})" for r in runs}
pick = st.selectbox("Open a run", ids, index=ids.index(cur) if cur in ids else 0, key="train_pick",
                    format_func=names.get)
rec = training.store().get(pick)
if rec is not None and (job is None or rec.id != job.run_id):
    live = training.manager().get(rec.id)
    if live is not None and live.events:
        with st.container(border=True):
            _show_progress(live)
    elif rec.status == "failed":
        st.error(f"The run failed: {text.md(rec.error)}")
    elif rec.status in ("interrupted", "cancelled"):
        st.warning(f"The run was {rec.status}." + (f" {text.md(rec.error)}" if rec.error else ""))
    hist = [e for e in training.store().events(rec.id, "progress")]
    if hist and live is None:
        st.plotly_chart(charts.training_curves(hist, title="Training curves"), key=f"curves_db_{rec.id}")
b1, b2, _ = st.columns([1, 1, 3])
if rec is not None and rec.status == "done":
    if b1.button("Show the results", type="primary", icon=":material/leaderboard:"):
        st.session_state[training.RUN_KEY] = rec.id
        if not training.belongs(rec, ds) and rec.dataset_id:   # Results shows the runs of the open dataset:
            try:                                               # open the one this run was trained on
                st.session_state[state.DATASET] = state.open_dataset(rec.dataset_id)
            except Exception:  # noqa: BLE001 - deleted since: Results says there is no run of this dataset
                pass
        st.switch_page("app_pages/results.py")
if rec is not None and not rec.is_active:
    if b2.button("Delete this run", icon=":material/delete:"):
        training.store().delete(rec.id)
        st.session_state.pop(training.RUN_KEY, None)
        st.rerun()
with st.expander("Settings and log of this run"):
    if rec is not None:
        st.json(rec.config, expanded=False)
        st.code(training.store().log_text(rec.id) or "(empty log)", language=None)
