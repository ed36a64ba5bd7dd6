"""Labels: the inferred true labels without any training — pick a method, see how sure it is, download."""
from __future__ import annotations

import numpy as np
import streamlit as st

from dashboard import quality_charts as qc
from dashboard import quality_view as qv
from dashboard import items_view, state, text
from kdcrowd_core import quality

#: items and per-class probability columns shown on screen (the download has every item and class)
SHOWN, SHOWN_CLASSES = 500, 20

st.title("Labels")
st.caption("The inferred true label of every item, from the answers alone (no features, no training). "
           "Same numbers as `kdcrowd aggregate`.")
ds = state.current()
c = ds.crowd

m1, m2 = st.columns([2, 2])
options = qv.method_options()
method = m1.selectbox("Method", options, format_func=qv.method_label, key=qv.METHOD_KEY,
                      help="default = the method kdcrowd picks for you (docs/inference.md).")
clamp = m2.toggle("Clamp gold labels during inference", key=qv.CLAMP_KEY, disabled=not c.has_gold,
                  help="Use the gold labels as known truths (semi-supervised), like `--clamp-gold` in the CLI. "
                       "Off: gold only measures accuracy, so the accuracy below is honest.")
try:
    lab = qv.labels_cached(ds.key, c, method, bool(clamp))
except Exception as exc:  # noqa: BLE001 - a method failing on odd data must not blank the page
    st.error(f"{qv.method_label(method)} could not fit these answers: {text.md(exc)}")
    st.stop()

conf = lab.proba.max(axis=1)
pred = lab.proba.argmax(axis=1)
cols = st.columns(4)
cols[0].metric("Items labelled", f"{c.n_items:,}")
cols[1].metric("Median confidence", f"{np.median(conf):.2f}")
cols[2].metric("Items with confidence < 0.9", f"{int((conf < 0.9).sum()):,}")
acc = quality.gold_accuracy(c, lab.proba)
if acc is not None and not lab.clamped:
    cols[3].metric(f"Accuracy on {acc['n']:,} gold items", f"{acc['accuracy']:.1%}",
                   help="95 % Wilson interval below.")
    st.caption(f"Accuracy against gold: **{acc['accuracy']:.1%}** (95 % interval {acc['low']:.1%} – "
               f"{acc['high']:.1%}, {acc['n']:,} gold items).")
elif lab.clamped:
    cols[3].metric("Accuracy on gold", "—", help="Gold labels are clamped: they can't measure accuracy.")
    st.caption("Gold labels are clamped into the inference, so accuracy against them would be right by "
               "construction: turn the clamp off to measure it.")
else:
    cols[3].metric("Accuracy on gold", "—", help="Upload gold labels on the Data page to measure accuracy.")

correct = None
if c.has_gold and not lab.clamped:
    m = c.gold_mask
    bins = qv.confidence_bins(conf[m], pred[m] == c.gold[m])
    title = "Confidence of the inferred labels on the gold items (right vs wrong)"
else:
    bins = qv.confidence_bins(conf)
    title = "Confidence of the inferred labels"
st.plotly_chart(qc.confidence_distribution(bins, title=title), key="labels_conf")

# the first rows only on screen (the table of every item and class is built when downloaded)
head = quality.labels_table_head(c, lab.proba, SHOWN, max_classes=SHOWN_CLASSES)
shown_labels, content_cfg = items_view.with_content(head, ds, item_column="item")
st.dataframe(shown_labels, hide_index=True, height=300, key="labels_table", column_config={
    "confidence": st.column_config.ProgressColumn("confidence", min_value=0.0, max_value=1.0, format="%.2f"),
    **content_cfg})
per_class = ("one probability column per class" if c.n_classes <= SHOWN_CLASSES
             else f"one probability column per class ({c.n_classes:,}: not shown here)")
st.caption(f"First {len(head):,} of {c.n_items:,} items shown; the download has them all: "
           f"item, label, confidence, then {per_class}.")
proba = lab.proba
st.download_button("Download the labels (CSV)", lambda: qv.csv_bytes(quality.labels_table(c, proba)),
                   file_name=f"labels_{lab.method}.csv", mime="text/csv", icon=":material/download:",
                   on_click="ignore", key="labels_download")
