"""User-provided strings shown as text, never as markup.

Ids, labels, column and file names, and messages that quote them come from
uploaded files: a CSV header ``![p](http://host/x.png)`` must not make the
browser fetch that URL, and a class named ``<b>x</b>`` must not turn bold.

- :func:`md` — for anything Streamlit renders as markdown (``st.markdown``,
  ``st.error``/``warning``/``info``/``success``, ``st.caption``, ``st.subheader``,
  widget labels, ``st.progress(text=)``, ``st.metric`` labels): the characters
  that start markdown, HTML, Streamlit directives (``:red[...]``,
  ``:material/...:``) or LaTeX (``$``) are backslash-escaped, so no link,
  image, emphasis, tag or directive survives; plain words, dots, commas,
  parentheses, ``a_b`` and ``name: message`` stay as they are (messages and
  file names read the same in tests and logs); newlines become spaces.
- :func:`code` — an inline code span that holds any text (paths, ids).
- :func:`plain` — for Plotly labels, titles and hover text: ``&``, ``<`` and
  ``>`` become HTML entities, which Plotly shows as the characters themselves.

Tables (``st.dataframe``), ``st.code``, ``st.json`` and the options of select
boxes show text as it is and need none of these.
"""
from __future__ import annotations

import html
import re

# always escaped: links/images ([ ]), HTML and autolinks (< > &), emphasis (* ~), code (`), LaTeX ($),
# headings/quotes/tables (# > |) and the escape character itself
_MD_ALWAYS = re.compile(r"([\\`*\[\]<>&~$#|])")
# "_" only at a word boundary (intraword "_" is never emphasis); ":" unless followed by a space or the end
# (":red[", ":material/x:", "http://" are broken, "file.csv: message" is not)
_MD_UNDERSCORE = re.compile(r"(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])")
_MD_COLON = re.compile(r":(?=\S)")
# list markers at the start of the text: "- x", "+ x", "1. x", "1) x"
_MD_LEAD = re.compile(r"^(\s*)([-+]|\d+(?=[.)]))")
_NEWLINES = re.compile(r"[\r\n\u2028\u2029]+")


def md(value) -> str:
    """``value`` as markdown that displays exactly its characters (one line)."""
    s = _NEWLINES.sub(" ", str(value))
    s = _MD_ALWAYS.sub(r"\\\1", s)
    s = _MD_UNDERSCORE.sub(r"\\_", s)
    s = _MD_COLON.sub(r"\\:", s)
    m = _MD_LEAD.match(s)
    if m:
        lead = m.group(2)
        s = m.group(1) + (("\\" + lead) if lead in "+-" else lead + "\\") + s[m.end():]
    return s


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
