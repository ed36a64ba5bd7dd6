"""Disagreement: where the crowd disagrees, which answers get mixed up, and how much workers agree overall."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import analysis as an
from dashboard import charts, class_paging, items_view, state

st.title("Disagreement")
ds = state.current()
c = ds.crowd
a = state.analysis(ds)
agr = state.agreement(ds, top=20)

# ------------------------------------------------------- agreement numbers
k1, k2, k3 = st.columns(3)
with k1:
    st.metric("Krippendorff's alpha", f"{agr['alpha']:.3f}")
    st.caption("1 = perfect agreement, 0 = no better than chance, below 0 = systematic disagreement; "
               "above ~0.8 is usually called reliable.")
with k2:
    st.metric("Fleiss' kappa", f"{agr['fleiss']:.3f}")
    st.caption("Agreement between answers on the same item beyond what chance gives: "
               "0.2 slight, 0.4 moderate, 0.6 substantial, 0.8+ almost perfect.")
with k3:
    contested = int((a.items["vote_entropy"] > 1e-12).sum())
    st.metric("Items with any disagreement", f"{contested:,}", f"{contested / max(c.n_items, 1):.0%} of items",
              delta_color="off", delta_arrow="off")
    st.caption("Items whose answers are not unanimous.")

# ------------------------------------------------------- contested items
st.subheader("Most contested items")
n_show = st.slider("Items shown", min_value=10, max_value=80, value=30, step=5, key="dis_n")
block = an.contested_items(c, a.items, a.consensus, n_items=n_show, n_workers=40)
st.caption("Rows: the items with the highest vote entropy; columns: the workers who answered most of them. "
           "Colour = the answer, × = the answer differs from the consensus (Dawid-Skene) label; grey = no answer.")
st.plotly_chart(charts.contested_items_heatmap(block["answers"], block["item_ids"], block["worker_ids"],
                                               c.classes, block["consensus"]), key="contested")
if ds.content is not None:   # what those items are: their text or picture
    contested_view = pd.DataFrame({"item": [str(i) for i in block["item_ids"]],
                                   "consensus": [str(x) for x in c.classes.take(block["consensus"])]})
    contested_view, content_cfg = items_view.with_content(contested_view, ds, item_column="item")
    st.dataframe(contested_view, hide_index=True, height=min(400, 40 + 35 * len(contested_view)),
                 key="contested_items", column_config=content_cfg)

col1, col2 = st.columns(2)
with col1:
    cooc_codes, cooc_classes = class_paging.picker(c.classes, c.label_counts(), key="dis_class_page",
                                                   what="class pairs")
    st.plotly_chart(charts.cooccurrence_heatmap(class_paging.block(agr["cooccurrence"], cooc_codes), cooc_classes),
                    key="cooc")
    st.caption("Each row: when an item got this answer, which answers did the other workers give it? "
               "A bright off-diagonal cell is a pair of classes the crowd mixes up.")
with col2:
    st.plotly_chart(charts.entropy_histogram(a.items["vote_entropy"].to_numpy()), key="entropy")
    st.caption("Vote entropy of each item's answers: 0 = everyone agrees; higher = answers spread over "
               "more classes.")

st.subheader("Pairwise Cohen's kappa of the 20 most active workers")
st.plotly_chart(charts.kappa_heatmap(agr["pairwise"]), key="kappa")
st.caption("Agreement of two workers on the items they both labelled, beyond chance (blue = agree, "
           "red = disagree, blank = too few shared items, or a worker who always gives the same label). "
           "A worker who disagrees with everyone shows as a red row.")
