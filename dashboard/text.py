"""User-provided strings shown as text, never as markup.

Ids, labels, column and file names, and messages that quote them come from
uploaded files: a CSV header ``![p](http://host/x.png)`` must not make the
browser fetch that URL, and a class named ``<b>x</b>`` must not turn bold.

- :func:`md` — for anything Streamlit renders as markdown (``st.markdown``,
  ``st.error``/``warning``/``info``/``success``, ``st.caption``, ``st.subheader``,
  widget labels, ``st.progress(text=)``, ``st.metric`` labels): every ASCII
  punctuation character is backslash-escaped (CommonMark allows it for all of
  them), so no link, image, emphasis, HTML, directive (``:red[...]``,
  ``:material/...:``) or LaTeX (``$``) survives; newlines become spaces.
- :func:`code` — an inline code span that holds any text (paths, ids).
- :func:`plain` — for Plotly labels, titles and hover text: ``&``, ``<`` and
  ``>`` become HTML entities, which Plotly shows as the characters themselves.

Tables (``st.dataframe``), ``st.code``, ``st.json`` and the options of select
boxes show text as it is and need none of these.
"""
from __future__ import annotations

import html
import re
import string

_MD_SPECIAL = re.compile("([" + re.escape(string.punctuation) + "])")
_NEWLINES = re.compile(r"[\r\n\u2028\u2029]+")


def md(value) -> str:
    """``value`` as markdown that displays exactly its characters (one line)."""
    s = _NEWLINES.sub(" ", str(value))
    return _MD_SPECIAL.sub(r"\\\1", s)


#: Alias used where the intent reads better as "escape for markdown".
md_escape = md


def code(value) -> str:
    """``value`` as an inline code span (any backticks inside are fenced around)."""
    s = _NEWLINES.sub(" ", str(value))
    runs = [len(m) for m in re.findall(r"`+", s)]
    fence = "`" * (max(runs, default=0) + 1)
    pad = " " if s.startswith("`") or s.endswith("`") or not s.strip() else ""
    return f"{fence}{pad}{s}{pad}{fence}"


def plain(value) -> str:
    """``value`` for a Plotly label, title or hover text: shown as written, no tags."""
    return html.escape(str(value), quote=False)


def plain_list(values) -> list[str]:
    """:func:`plain` of each value."""
    return [plain(v) for v in values]
