"""kdcrowd dashboard — entry point: page navigation and the shared frame only.

Start it with ``kdcrowd dashboard`` (safe settings from any folder: localhost, XSRF on, upload
limit; see kdcrowd_core/cli_dashboard.py).  ``streamlit run dashboard/app.py`` reads
``.streamlit/config.toml`` only when run from the repository root.
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `streamlit run dashboard/app.py` puts dashboard/, not the root, on sys.path
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from dashboard import frame, state  # noqa: E402

st.set_page_config(page_title="kdcrowd — crowd label quality", page_icon=":material/groups:", layout="wide")

pages = [
    st.Page("app_pages/data.py", title="Data", icon=":material/upload_file:", default=True),
    st.Page("app_pages/labels.py", title="Labels", icon=":material/label:"),
    st.Page("app_pages/items.py", title="Item quality", icon=":material/rule:"),
    st.Page("app_pages/workers.py", title="Workers", icon=":material/group:"),
    st.Page("app_pages/disagreement.py", title="Disagreement", icon=":material/call_split:"),
    st.Page("app_pages/train.py", title="Train", icon=":material/model_training:"),
    st.Page("app_pages/results.py", title="Results", icon=":material/leaderboard:"),
]
page = st.navigation(pages)
state.follow_url()   # the dataset in the page address (?dataset=<id>) is the one every page shows
frame.sidebar()
page.run()
