"""The Data page's "Adjust how this file is read": a preview of the first rows and the reading options.

Every control is one field of :class:`~kdcrowd_core.io.options.ReadOptions`
(the object the library and the CLI use too); a change is applied at once:
the current dataset is read again with the new options (same dataset id), or,
for an annotations file that could not be read, the file is tried again and
becomes a dataset as soon as it reads.  Messages name these controls (the
library's messages are rendered for the dashboard).
"""
from __future__ import annotations

import io as _io
import json
from collections.abc import MutableMapping
from typing import Any

import pandas as pd
import streamlit as st

from kdcrowd_core.errors import CrowdDataError
from kdcrowd_core.io.options import (DUPLICATES, FORMATS, ID_TRANSFORM_PRESETS, ReadOptions, id_transform_name,
                                     parse_label_map, read_label_map)

from . import state, text

TITLE = "Adjust how this file is read"
DETECT = "(detect)"
ROLE_FIELDS = (("item", "Item column"), ("worker", "Worker column"), ("label", "Label column"))
OTHER_FIELDS = (("gold", "gold_item", "Gold item column"), ("gold", "gold_label", "Gold label column"),
                ("features", "features_item", "Features item column"))
LABEL_BOXES = (("label_trim", "Trim spaces around labels"), ("label_case_fold", "Ignore case of labels"),
               ("label_merge_numbers", "Merge labels that are the same number"))


@st.cache_resource(max_entries=4, show_spinner="Reading the first rows…")
def _preview(content_digest: str, _payload: bytes, name: str, options_json: str):
    from kdcrowd_core.io.preview import preview_table
    return preview_table(_payload, json.loads(options_json), n=12, name=name)


def header_columns(payload: bytes, name: str) -> list[str]:
    """The column names of a small table file (for the gold / features column pickers); [] when unknown."""
    try:
        if name.lower().endswith((".parquet", ".pq")):
            return [str(c) for c in pd.read_parquet(_io.BytesIO(payload)).columns]
        head = payload[:65536].decode("utf-8", errors="replace").splitlines()[:20]
        df = pd.read_csv(_io.StringIO("\n".join(head)), sep=None, engine="python", nrows=5, dtype=str)
        return [str(c) for c in df.columns]
    except Exception:  # noqa: BLE001 - a header we can't guess just means no picker
        return []


def options_from_widgets(values: dict[str, Any]) -> dict:
    """The ReadOptions dict (non-default fields) for the controls' ``values``; raises CrowdDataError."""
    kw: dict[str, Any] = {"format": values.get("format") or "auto"}
    for field in ("item", "worker", "label", "gold_item", "gold_label", "features_item"):
        v = values.get(field)
        if v not in (None, "", DETECT):
            kw[field] = v
    kw["id_transform"] = ID_TRANSFORM_PRESETS.get(values.get("id_transform") or "strip spaces", ("strip",))
    for field, _ in LABEL_BOXES:
        kw[field] = bool(values.get(field))
    mapping = (values.get("label_map") or "").strip()
    if mapping:
        kw["label_map"] = parse_label_map(mapping)
    kw["duplicates"] = values.get("duplicates") or "all"
    return ReadOptions(**kw).to_dict()


def label_map_text(mapping: dict | None) -> str:
    return ", ".join(f"{k}={v}" for k, v in (mapping or {}).items())


def _keys(token: str) -> dict[str, str]:
    names = ["format", "item", "worker", "label", "id_transform", "duplicates", "label_map", "label_map_file",
             "gold_item", "gold_label", "features_item"] + [f for f, _ in LABEL_BOXES]
    return {n: f"adj_{n}_{token}" for n in names}


def _values(s: MutableMapping, token: str) -> dict[str, Any]:
    return {n: s.get(k) for n, k in _keys(token).items()}


def _apply(token: str, target: str, payload: bytes | None, name: str) -> None:
    """Callback of every control: read the file(s) again with the controls' options."""
    s = st.session_state
    try:
        opts = options_from_widgets(_values(s, token))
    except CrowdDataError as exc:
        s[state.UPLOAD_ERROR] = state.message(exc)
        return
    if target == "failed":
        state.ingest(s, "answers", payload, name, options=opts)
    else:
        state.reread(s, opts)


def _label_map_file(token: str, target: str, payload: bytes | None, name: str) -> None:
    s = st.session_state
    k = _keys(token)
    f = s.get(k["label_map_file"])
    if f is None:
        return
    try:
        s[k["label_map"]] = label_map_text(read_label_map(f.getvalue(), name=f.name))
    except CrowdDataError as exc:
        s[state.UPLOAD_ERROR] = state.message(exc)
        return
    _apply(token, target, payload, name)


def panel(ds: state.Dataset, failed: dict | None) -> None:
    """The expander: for the annotations file that failed to read (``failed``), else for ``ds``."""
    if failed is not None:
        payload, name, options, target = failed["payload"], failed["name"], failed.get("options") or {}, "failed"
        token = f"f{state.digest(payload)[:10]}"
    elif ds.id and "answers" in ds.sources and not (ds.is_sample and ds.sources["answers"].size == 0):
        try:
            payload = state.read_source(ds, "answers")
        except (OSError, CrowdDataError):
            return
        name, options, target = ds.sources["answers"].name, ds.options, "current"
        token = f"d{ds.id[:12]}{state.digest(json.dumps(options, sort_keys=True).encode())[:6]}"
    else:
        return
    pv = _preview(state.digest(payload), payload, name, json.dumps(options, sort_keys=True))
    o = ReadOptions.from_dict(options)
    k = _keys(token)
    args = (token, target, payload, name)
    with st.expander(TITLE, expanded=failed is not None or bool(pv.ambiguous), icon=":material/tune:"):
        if failed is not None:
            st.markdown(f"**{text.md(name)}** could not be read as it is: pick the columns below; the file is read "
                        "again at once, and becomes a dataset as soon as it reads.")
        if pv.rows is not None:
            st.caption(f"The first rows of {text.md(name)}, as written in the file:")
            st.dataframe(pv.rows, hide_index=True, height=min(320, 38 + 35 * len(pv.rows)), key=f"adj_rows_{token}")
        if pv.problem is not None and target != "failed":   # a failed upload's message is shown above
            st.warning(text.md(pv.message("dashboard")), icon=":material/help:")
        elif pv.roles:
            st.caption("Read as: layout " + text.md(pv.format) + "; "
                       + "; ".join(f"{text.md(r)} column {text.code(c)}" for r, c in pv.roles.items()))
        cols = [str(c) for c in pv.columns]
        c = st.columns(4)
        c[0].selectbox("File layout", list(FORMATS), index=list(FORMATS).index(o.format), key=k["format"],
                       on_change=_apply, args=args,
                       help="auto: detected from the columns. long: one row per answer; wide: one column per "
                            "worker; or an MTurk / Toloka / Label Studio export.")
        for (field, label), col in zip(ROLE_FIELDS, c[1:]):
            current = getattr(o, field)
            choices = [DETECT] + cols + ([str(current)] if current is not None and str(current) not in cols else [])
            col.selectbox(label, choices, index=choices.index(str(current)) if current is not None else 0,
                          key=k[field], on_change=_apply, args=args)
        d = st.columns(4)
        presets = list(ID_TRANSFORM_PRESETS)
        now = id_transform_name(o.id_transform)
        d[0].selectbox("Item id transform", presets, index=presets.index(now) if now in presets else 0,
                       key=k["id_transform"], on_change=_apply, args=args,
                       help="Applied to every item id (annotations, gold, features, item content), e.g. to match "
                            "URLs in the annotations with file names in the features.")
        d[1].selectbox("Repeated answers", list(DUPLICATES), index=list(DUPLICATES).index(o.duplicates),
                       key=k["duplicates"], on_change=_apply, args=args,
                       help="A worker's repeated answers to one item: all count, or keep the last / first one.")
        for (field, label), col in zip(LABEL_BOXES, st.columns(3)):
            col.checkbox(label, value=bool(getattr(o, field)), key=k[field], on_change=_apply, args=args)
        m1, m2 = st.columns([3, 2])
        m1.text_input("Class names for label codes", value=label_map_text(o.label_map), key=k["label_map"],
                      on_change=_apply, args=args, placeholder="0=highway, 1=insidecity, 2=tallbuilding",
                      help="Give label codes their class names (code=name, separated by commas); the order "
                           "given is the class order.")
        m2.file_uploader("…or a two-column file (code, class name)", type=["csv", "tsv", "txt"],
                         key=k["label_map_file"], on_change=_label_map_file, args=args)
        others = [(kind, f, lab) for kind, f, lab in OTHER_FIELDS if target == "current" and kind in ds.sources]
        if others:
            g = st.columns(len(others))
            for (kind, field, label), col in zip(others, g):
                try:
                    heads = header_columns(state.read_source(ds, kind), ds.sources[kind].name)
                except (OSError, CrowdDataError):
                    heads = []
                current = getattr(o, field)
                choices = [DETECT] + heads + ([str(current)] if current is not None and str(current) not in heads
                                              else [])
                col.selectbox(label, choices, index=choices.index(str(current)) if current is not None else 0,
                              key=k[field], on_change=_apply, args=args)


def _use_transform(steps: tuple[str, ...]) -> None:
    state.apply_id_transform(st.session_state, steps)


def _diagnosis_box(kind: str, d, pending: bool) -> None:
    what = state.ID_KINDS.get(kind, kind)
    with st.container(border=True):
        head = (f"The item ids of {text.md(d.source or what)} don't line up with the annotations'"
                + (": the file was not added." if pending else "."))
        st.markdown(f"**{head}**")
        st.write(text.md(d.message("dashboard")))
        if d.example_answer_id is not None or d.example_other_id is not None:
            st.dataframe(pd.DataFrame({"annotations' item id (example)": [str(d.example_answer_id)],
                                       f"{what} id (example)": [str(d.example_other_id)]}),
                         hide_index=True, key=f"diag_examples_{kind}_{pending}")
        if d.proposed_transform is not None:
            name = id_transform_name(d.proposed_transform)
            st.caption(text.md(f"With the item id transform “{name}”, {d.n_matched_proposed} ids match "
                               f"(now {d.n_matched})."))
            st.button(f"Use the item id transform “{name}”", key=f"diag_apply_{kind}_{pending}", type="primary",
                      icon=":material/auto_fix_high:", on_click=_use_transform, args=(tuple(d.proposed_transform),))
        else:
            hint = d.hint("dashboard")
            if hint:
                st.caption(text.md(hint))


def id_diagnosis(ds: state.Dataset, pending: dict | None) -> None:
    """io's id diagnosis for a file that was refused (``pending``) or loaded with few matching ids."""
    if pending is not None:
        _diagnosis_box(pending["kind"], pending["diagnosis"], True)
    for kind, d in _problems(ds):
        if pending is None or kind != pending["kind"]:
            _diagnosis_box(kind, d, False)


def _problems(ds: state.Dataset):
    try:
        return state.id_problems(ds)
    except Exception:  # noqa: BLE001 - a diagnosis failure must not hide the page
        return []
