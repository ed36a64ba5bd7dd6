"""Pure chart builders: data in, plotly figure out.

Nothing here imports streamlit or reads session state, so every builder is
unit-tested without a browser.  Conventions used everywhere:

- one colour per class (:func:`class_colors`) and one per method
  (:data:`METHOD_COLORS`), so "cat" or "student" look the same on every page;
- heatmaps of probabilities use :data:`PROB_SCALE` on a fixed 0..1 range so two
  matrices side by side are comparable;
- every trace carries a hover template naming ids and counts;
- inputs are already aggregated (counts, bins, top-N): no builder ever receives
  one point per answer, so figures stay small on a million answers;
- user strings (class names, worker and item ids, titles naming them) are shown
  as text: every label goes through :func:`_short` / :func:`_text`
  (:func:`dashboard.text.plain`), so ``<b>`` or ``<a href>`` in an uploaded file
  is displayed, never rendered, and ``%{...}`` never reaches a hover template.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .text import plain

# ----------------------------------------------------------------- palettes
#: Qualitative palette for classes (Plotly "D3" + "Dark24" extension), colour-blind friendly first.
CLASS_PALETTE: tuple[str, ...] = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#2e91e5", "#e15f99", "#1ca71c", "#fb0d0d", "#da16ff", "#222a2a",
    "#b68100", "#750d86", "#eb663b", "#511cfb", "#00a08b", "#fb00d1", "#fc0080", "#b2828d",
)

#: Method colours, used by every chart comparing methods.
METHOD_COLORS: dict[str, str] = {
    "mv": "#9e9e9e",        # majority vote: neutral grey
    "ds": "#1f77b4",        # Dawid-Skene: blue
    "teacher": "#ff7f0e",   # teacher crowd model: orange
    "student": "#2ca02c",   # KD student: green
    "stage2": "#9467bd",    # stage 2: purple
    "gold": "#000000",
    "empirical": "#000000",
}
METHOD_LABELS: dict[str, str] = {
    "mv": "Majority vote", "ds": "Dawid-Skene", "teacher": "Teacher", "student": "Student",
    "stage2": "Stage 2", "gold": "Gold", "empirical": "Empirical (gold)",
}
METHOD_ORDER: tuple[str, ...] = ("mv", "ds", "teacher", "student", "stage2")

#: Sequential scale for probabilities and normalised counts (white -> deep blue).
PROB_SCALE = "Blues"
#: Diverging scale for signed changes and kappas.
DIVERGING_SCALE = "RdBu"

FONT = dict(family="Inter, Segoe UI, Helvetica, Arial, sans-serif", size=13)
NO_ANSWER_COLOR = "#f2f2f2"


def class_colors(classes: Sequence) -> dict[str, str]:
    """Map each class name (as str) to a colour; stable for a given class order."""
    return {str(c): CLASS_PALETTE[i % len(CLASS_PALETTE)] for i, c in enumerate(classes)}


def method_color(method: str) -> str:
    return METHOD_COLORS.get(method, "#555555")


def method_label(method: str) -> str:
    return METHOD_LABELS.get(method, method)


def _layout(fig: go.Figure, title: str, *, height: int | None = None, **kw) -> go.Figure:
    kw.setdefault("margin", dict(l=60, r=20, t=60, b=50))
    fig.update_layout(
        title=dict(text=_text(title), x=0.0, xanchor="left", font=dict(size=16)),
        font=FONT, template="plotly_white", hoverlabel=dict(font_size=12), **kw,
    )
    if height is not None:
        fig.update_layout(height=height)
    return fig


def _text(v) -> str:
    """A user string as Plotly text: tags shown as written (entities), no hover-template fields."""
    return plain(v).replace("%{", "%\u200b{")


def _short(v, n: int = 18) -> str:
    """``v`` cut to ``n`` characters, as Plotly text (see :func:`_text`)."""
    s = str(v)
    return _text(s if len(s) <= n else s[: n - 1] + "…")


# ------------------------------------------------------------------ data page
def count_distribution(counts: np.ndarray, *, title: str, what: str, per: str,
                       max_bars: int = 60) -> go.Figure:
    """Histogram of a count per entity (e.g. answers per item), as bars of pre-binned counts.

    ``counts``: int array, one entry per entity (items or workers).  Values are
    binned with ``bincount`` (or into ``max_bars`` equal-width bins when the
    range is wider), so the figure holds at most ``max_bars`` bars.
    """
    counts = np.asarray(counts, dtype=np.int64)
    fig = go.Figure()
    if counts.size:
        lo, hi = int(counts.min()), int(counts.max())
        if hi - lo + 1 <= max_bars:
            x = np.arange(lo, hi + 1)
            y = np.bincount(counts - lo, minlength=hi - lo + 1)
            text = [str(v) for v in x]
            width = None
        else:
            edges = np.linspace(lo, hi + 1, max_bars + 1)
            y, _ = np.histogram(counts, bins=edges)
            x = (edges[:-1] + edges[1:]) / 2
            text = [f"{int(np.ceil(a))}–{int(np.ceil(b)) - 1}" for a, b in zip(edges[:-1], edges[1:])]
            width = float(edges[1] - edges[0])
        fig.add_trace(go.Bar(
            x=x, y=y, width=width, marker_color="#4c78a8", customdata=text, name=per,
            hovertemplate=f"{what}: %{{customdata}}<br>{per}: %{{y}}<extra></extra>",
        ))
    fig.update_xaxes(title_text=what)
    fig.update_yaxes(title_text=f"number of {per}")
    return _layout(fig, title, height=320, bargap=0.05, showlegend=False)


def class_balance(classes: Sequence, answer_counts: np.ndarray, *,
                  gold_counts: np.ndarray | None = None, title: str = "Class balance") -> go.Figure:
    """Share of answers per class (and of gold labels when given), coloured per class.

    Two traces when ``gold_counts`` is given: answers (solid) and gold (hatched).
    """
    names = [str(c) for c in classes]
    colors = class_colors(classes)
    a = np.asarray(answer_counts, dtype=float)
    fig = go.Figure()
    shown = [_text(n) for n in names]
    fig.add_trace(go.Bar(
        x=shown, y=a / max(a.sum(), 1), name="answers", marker_color=[colors[n] for n in names],
        customdata=a.astype(int), hovertemplate="class %{x}<br>answers: %{customdata} (%{y:.1%})<extra></extra>",
    ))
    if gold_counts is not None:
        g = np.asarray(gold_counts, dtype=float)
        fig.add_trace(go.Bar(
            x=shown, y=g / max(g.sum(), 1), name="gold labels",
            marker=dict(color=[colors[n] for n in names], pattern_shape="/", opacity=0.55),
            customdata=g.astype(int), hovertemplate="class %{x}<br>gold: %{customdata} (%{y:.1%})<extra></extra>",
        ))
    fig.update_yaxes(title_text="share", tickformat=".0%")
    fig.update_xaxes(title_text="class", type="category")
    return _layout(fig, title, height=320, barmode="group", showlegend=gold_counts is not None,
                   legend=dict(orientation="h", y=1.12, x=1, xanchor="right"))


# --------------------------------------------------------------- confusion
def _matrix_heatmap(M: np.ndarray, classes: Sequence, *, counts: np.ndarray | None = None,
                    name: str = "", showscale: bool = True, zmax: float = 1.0,
                    text: bool = True) -> go.Heatmap:
    names = [_short(c, 12) for c in classes]
    M = np.asarray(M, dtype=float)
    custom = np.zeros_like(M) if counts is None else np.asarray(counts, dtype=float)
    hover = (f"{name}<br>" if name else "") + "true %{y} → answer %{x}<br>P = %{z:.2f}"
    if counts is not None:
        hover += "<br>answers: %{customdata:.0f}"
    return go.Heatmap(
        z=M, x=names, y=names, zmin=0.0, zmax=zmax, colorscale=PROB_SCALE, showscale=showscale,
        customdata=custom, hovertemplate=hover + "<extra></extra>", name=name,
        # values under 0.005 are left blank: the few large entries of a K x K matrix stay readable
        text=np.where(M >= 0.005, np.char.mod("%.2f", M), "") if text else None,
        texttemplate="%{text}" if text else None,
        textfont=dict(size=10), colorbar=dict(title="P", thickness=12, len=0.8) if showscale else None,
        xgap=1, ygap=1,
    )


def confusion_heatmap(M: np.ndarray, classes: Sequence, *, title: str,
                      counts: np.ndarray | None = None) -> go.Figure:
    """One K x K confusion matrix ``M[true, answer]`` (rows sum to 1) as an annotated heatmap."""
    K = len(classes)
    fig = go.Figure(_matrix_heatmap(M, classes, counts=counts, text=K <= 12))
    fig.update_xaxes(title_text="answer", side="bottom", type="category")
    fig.update_yaxes(title_text="true class", autorange="reversed", type="category")
    size = min(560, 220 + 32 * K)
    return _layout(fig, title, height=size)


def matrices_side_by_side(matrices: Mapping[str, np.ndarray], classes: Sequence, *, title: str,
                          counts: Mapping[str, np.ndarray] | None = None) -> go.Figure:
    """Several K x K matrices of the same worker in one row (e.g. DS, teacher, stage 2, empirical)."""
    names = list(matrices)
    n = max(len(names), 1)
    K = len(classes)
    # one row while the cells stay wide enough for their numbers, else two matrices per row
    cols = n if n * K <= 24 else min(n, 2)
    rows = int(np.ceil(n / cols))
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[method_label(m) for m in names],
                        horizontal_spacing=0.06 if cols > 2 else 0.1,
                        vertical_spacing=0.12 if rows > 1 else 0.3)
    for k, m in enumerate(names):
        r, c = divmod(k, cols)
        fig.add_trace(_matrix_heatmap(matrices[m], classes, name=method_label(m),
                                      counts=None if counts is None else counts.get(m),
                                      showscale=(k == n - 1), text=K <= 12), row=r + 1, col=c + 1)
        fig.update_yaxes(autorange="reversed", type="category", row=r + 1, col=c + 1,
                         title_text="true class" if c == 0 else None, showticklabels=(c == 0))
        fig.update_xaxes(type="category", title_text="answer" if r == rows - 1 else None, row=r + 1, col=c + 1,
                         showticklabels=(r == rows - 1 or k + cols >= n))
    return _layout(fig, title, height=rows * min(460, 200 + 28 * K) + 60)


def worker_matrix_grid(matrices: np.ndarray, worker_ids: Sequence, classes: Sequence, *,
                       subtitles: Sequence[str] | None = None, cols: int = 4,
                       title: str = "Worker confusion matrices") -> go.Figure:
    """A grid of small per-worker confusion heatmaps sharing one 0..1 colour scale.

    ``matrices``: (n, K, K) for the n workers shown (the caller paginates: keep n <= ~24).
    """
    M = np.asarray(matrices, dtype=float)
    n = M.shape[0]
    cols = max(1, min(cols, n)) if n else 1
    rows = max(1, int(np.ceil(n / cols)))
    labels = [_text(w) for w in worker_ids]
    sub = list(subtitles) if subtitles is not None else labels   # subtitles: already Plotly text (use _short)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=sub + [""] * (rows * cols - n),
                        horizontal_spacing=0.035, vertical_spacing=min(0.12, 0.35 / rows))
    K = len(classes)
    names = [_short(c, 10) for c in classes]
    for k in range(n):
        r, c = divmod(k, cols)
        fig.add_trace(go.Heatmap(
            z=M[k], x=names, y=names, zmin=0, zmax=1, colorscale=PROB_SCALE, showscale=(k == 0),
            colorbar=dict(title="P", thickness=10, len=0.5, y=1, yanchor="top") if k == 0 else None,
            hovertemplate=f"worker {_short(worker_ids[k], 40)}<br>true %{{y}} → answer %{{x}}<br>P = %{{z:.2f}}<extra></extra>",
            xgap=1, ygap=1, name=labels[k],
        ), row=r + 1, col=c + 1)
        fig.update_yaxes(autorange="reversed", type="category", showticklabels=(c == 0 and K <= 12),
                         row=r + 1, col=c + 1, tickfont=dict(size=9))
        fig.update_xaxes(type="category", showticklabels=False, row=r + 1, col=c + 1)
    for a in fig.layout.annotations:
        a.font = dict(size=10 if cols > 4 else 11)
    return _layout(fig, title, height=60 + 210 * rows, margin=dict(l=60, r=20, t=80, b=20))


# --------------------------------------------------------------- disagreement
def contested_items_heatmap(answers: np.ndarray, item_ids: Sequence, worker_ids: Sequence,
                            classes: Sequence, consensus: np.ndarray, *,
                            title: str = "Most contested items") -> go.Figure:
    """Item x worker heatmap of answers for a few contested items.

    ``answers``: (n_items_shown, n_workers_shown) int class codes, -1 = no answer.
    ``consensus``: (n_items_shown,) consensus class code per item.  Colour =
    the answer's class; a small black ``x`` marks answers that disagree with
    the consensus.  One trace for the colours, one for the markers.
    """
    A = np.asarray(answers, dtype=np.int64)
    n_i, n_w = A.shape
    K = len(classes)
    palette = list(class_colors(classes).values())
    # discrete colourscale: value k in [0, K] -> colour; -1 shown as the NaN gap colour
    z = np.where(A >= 0, A, np.nan).astype(float)
    scale = []
    for k in range(K):
        lo, hi = k / K, (k + 1) / K
        scale += [[lo, palette[k]], [hi, palette[k]]]
    items = [f"item {_short(i, 20)}" for i in item_ids]
    workers = [_short(w, 14) for w in worker_ids]
    cname = np.asarray([_text(c) for c in classes], dtype=object)
    ans_txt = np.where(A >= 0, cname[np.clip(A, 0, K - 1)], "—")
    cons_txt = np.repeat(cname[np.asarray(consensus)][:, None], n_w, axis=1)
    custom = np.stack([ans_txt, cons_txt], axis=-1)
    fig = go.Figure(go.Heatmap(
        z=z, x=workers, y=items, zmin=-0.5, zmax=K - 0.5, colorscale=scale, showscale=True,
        customdata=custom, xgap=1, ygap=1, name="answers",
        colorbar=dict(title="answer", tickvals=list(range(K)), ticktext=[_short(c, 12) for c in classes],
                      thickness=12),
        hovertemplate="%{y}<br>worker %{x}<br>answer: %{customdata[0]}<br>consensus: %{customdata[1]}<extra></extra>",
    ))
    ii, ww = np.nonzero((A >= 0) & (A != np.asarray(consensus)[:, None]))
    fig.add_trace(go.Scatter(
        x=[workers[w] for w in ww], y=[items[i] for i in ii], mode="markers", name="disagrees with consensus",
        marker=dict(symbol="x-thin", size=8, color="black", line=dict(width=2, color="black")),
        hoverinfo="skip",
    ))
    fig.update_yaxes(autorange="reversed", type="category", tickfont=dict(size=10))
    fig.update_xaxes(type="category", tickangle=-60, tickfont=dict(size=10), title_text="worker")
    fig.update_layout(plot_bgcolor=NO_ANSWER_COLOR)
    return _layout(fig, title, height=max(360, 120 + 18 * n_i),
                   legend=dict(orientation="h", y=1.02, x=1, xanchor="right", yanchor="bottom"))


def cooccurrence_heatmap(C: np.ndarray, classes: Sequence, *,
                         title: str = "How often two answers meet on the same item") -> go.Figure:
    """K x K symmetric counts of answer pairs given to the same item, normalised per row in the colour.

    Colour = share of row class's pairs (row-normalised) so rare classes stay
    visible; the hover shows the raw pair count.
    """
    C = np.asarray(C, dtype=float)
    R = C / np.maximum(C.sum(axis=1, keepdims=True), 1e-12)
    names = [_short(c, 12) for c in classes]
    K = len(classes)
    fig = go.Figure(go.Heatmap(
        z=R, x=names, y=names, zmin=0, zmax=1, colorscale=PROB_SCALE, customdata=C,
        text=np.round(R, 2) if K <= 12 else None, texttemplate="%{text:.2f}" if K <= 12 else None,
        hovertemplate="answers %{y} & %{x}<br>pairs: %{customdata:,.0f}<br>share of %{y}'s pairs: %{z:.1%}<extra></extra>",
        colorbar=dict(title=dict(text="share", side="right"), thickness=12), xgap=1, ygap=1,
    ))
    fig.update_yaxes(autorange="reversed", type="category", title_text="answer")
    fig.update_xaxes(type="category", title_text="other answer on the same item")
    return _layout(fig, title, height=min(560, 220 + 32 * K))


def entropy_histogram(entropy: np.ndarray, *, bins: int = 30, unit: str = "nats",
                      title: str = "Vote entropy per item") -> go.Figure:
    """Histogram of per-item vote entropy (in ``unit``), pre-binned with numpy; NaN (no answer) left out."""
    e = np.asarray(entropy, dtype=float)
    e = e[np.isfinite(e)]
    hi = max(float(e.max()) if e.size else 1.0, 1e-6)
    counts, edges = np.histogram(e, bins=bins, range=(0.0, hi))
    mids = (edges[:-1] + edges[1:]) / 2
    lab = [f"{a:.2f}–{b:.2f}" for a, b in zip(edges[:-1], edges[1:])]
    fig = go.Figure(go.Bar(x=mids, y=counts, width=float(edges[1] - edges[0]), marker_color="#e45756",
                           customdata=lab, name="items",
                           hovertemplate=f"entropy %{{customdata}} {unit}<br>items: %{{y}}<extra></extra>"))
    fig.update_xaxes(title_text=f"vote entropy ({unit}; 0 = unanimous)")
    fig.update_yaxes(title_text="number of items")
    return _layout(fig, title, height=320, bargap=0.03, showlegend=False)


def kappa_heatmap(kappa: pd.DataFrame, *, title: str = "Pairwise Cohen's kappa",
                  overlap: pd.DataFrame | None = None) -> go.Figure:
    """Worker x worker Cohen's kappa (NaN where two workers share too few items)."""
    names = [_short(w, 14) for w in kappa.index]
    z = kappa.to_numpy(dtype=float)
    custom = np.zeros_like(z) if overlap is None else overlap.reindex_like(kappa).to_numpy(dtype=float)
    hover = "workers %{y} & %{x}<br>kappa = %{z:.2f}"
    if overlap is not None:
        hover += "<br>shared items: %{customdata:.0f}"
    fig = go.Figure(go.Heatmap(z=z, x=names, y=names, zmin=-1, zmax=1, zmid=0, colorscale=DIVERGING_SCALE,
                               customdata=custom, hovertemplate=hover + "<extra></extra>",
                               colorbar=dict(title="κ", thickness=12), xgap=1, ygap=1))
    fig.update_yaxes(autorange="reversed", type="category", tickfont=dict(size=10))
    fig.update_xaxes(type="category", tickangle=-60, tickfont=dict(size=10))
    return _layout(fig, title, height=min(640, 200 + 22 * len(names)))


# ------------------------------------------------------------------ workers
def worker_scatter(stats: pd.DataFrame, *, x: str = "answers", y: str = "accuracy",
                   color: str | None = "spammer_score",
                   title: str = "Workers: activity vs estimated accuracy") -> go.Figure:
    """One point per worker (R points), log-x activity vs estimated accuracy."""
    ids = [_text(i) for i in stats.index]
    marker = dict(size=8, line=dict(width=0.5, color="white"))
    if color is not None and color in stats:
        marker.update(color=stats[color].to_numpy(dtype=float), colorscale="Reds", showscale=True,
                      colorbar=dict(title=color.replace("_", " "), thickness=12))
    fig = go.Figure(go.Scattergl(
        x=stats[x].to_numpy(), y=stats[y].to_numpy(dtype=float), mode="markers", marker=marker, text=ids,
        name="workers", hovertemplate="worker %{text}<br>" + x + ": %{x}<br>" + y + ": %{y:.2f}<extra></extra>",
    ))
    fig.update_xaxes(title_text=x.replace("_", " "), type="log")
    fig.update_yaxes(title_text=("estimated " if y == "accuracy" else "") + y.replace("_", " "), range=[0, 1.02])
    return _layout(fig, title, height=360, showlegend=False)


# ------------------------------------------------------------------ training
def training_curves(history: Sequence[Mapping], *, title: str = "Training curves") -> go.Figure:
    """Loss (left) and accuracy (right) per epoch for each neural stage (teacher, student, stage 2).

    One loss trace per stage present, plus one accuracy trace per stage that
    reports ``train_accuracy`` and one per stage that reports ``valid_accuracy``.
    """
    df = pd.DataFrame([h for h in history if h.get("stage") in ("teacher", "student", "stage2")
                       and h.get("epoch")])
    fig = make_subplots(rows=1, cols=2, subplot_titles=("loss", "accuracy"), horizontal_spacing=0.1)
    if len(df):
        for stage in ("teacher", "student", "stage2"):
            d = df[df["stage"] == stage]
            if d.empty:
                continue
            d = d.drop_duplicates("epoch", keep="last")
            col = method_color(stage)
            lab = method_label(stage)
            fig.add_trace(go.Scatter(x=d["epoch"], y=d["loss"], mode="lines+markers", name=f"{lab} loss",
                                     line=dict(color=col), marker=dict(size=4), legendgroup=stage,
                                     hovertemplate=f"{lab}<br>epoch %{{x}}<br>loss %{{y:.4f}}<extra></extra>"),
                          row=1, col=1)
            for key, dash, word in (("train_accuracy", "solid", "train"), ("valid_accuracy", "dot", "valid")):
                if key in d and d[key].notna().any():
                    fig.add_trace(go.Scatter(
                        x=d["epoch"], y=d[key], mode="lines+markers", name=f"{lab} {word} acc.",
                        line=dict(color=col, dash=dash), marker=dict(size=4), legendgroup=stage,
                        hovertemplate=f"{lab} {word}<br>epoch %{{x}}<br>accuracy %{{y:.1%}}<extra></extra>"),
                        row=1, col=2)
    fig.update_xaxes(title_text="epoch", tickformat="d", rangemode="normal")
    fig.update_yaxes(tickformat=".0%", row=1, col=2)
    return _layout(fig, title, height=340, legend=dict(orientation="h", y=-0.25))


# ------------------------------------------------------------------ results
def accuracy_bars(accuracy: Mapping[str, Mapping[str, float]], *, title: str = "Accuracy") -> go.Figure:
    """Grouped bars: ``accuracy[split][method]`` -> one trace per split, bars coloured per method.

    Example: ``{"annotated items": {"mv": .8, ...}, "test split": {"teacher": .7, ...}}``.
    """
    fig = go.Figure()
    patterns = ["", "/", ".", "x"]
    for s, (split, accs) in enumerate(accuracy.items()):
        methods = [m for m in METHOD_ORDER if m in accs] + [m for m in accs if m not in METHOD_ORDER]
        vals = [accs[m] for m in methods]
        fig.add_trace(go.Bar(
            x=[method_label(m) for m in methods], y=vals, name=split,
            marker=dict(color=[method_color(m) for m in methods], pattern_shape=patterns[s % len(patterns)],
                        line=dict(color="white", width=1)),
            text=[f"{v:.1%}" for v in vals], textposition="outside",
            hovertemplate=f"{split}<br>%{{x}}: %{{y:.2%}}<extra></extra>",
        ))
    all_vals = [v for a in accuracy.values() for v in a.values()]
    lo = max(0.0, min(all_vals) - 0.1) if all_vals else 0.0
    fig.update_yaxes(range=[lo, 1.05], tickformat=".0%", title_text="accuracy", tickvals=_accuracy_ticks(lo))
    return _layout(fig, title, height=360, barmode="group",
                   legend=dict(orientation="h", y=1.12, x=1, xanchor="right"))


def _accuracy_ticks(lo: float) -> list[float]:
    """Ticks from ``lo`` up to 100 % (the axis goes a bit higher for the bar labels; no "105 %" tick)."""
    step = 0.1 if 1.0 - lo > 0.35 else 0.05
    first = np.ceil(round(lo / step, 6)) * step
    return [round(float(v), 4) for v in np.arange(first, 1.0 + 1e-9, step)]


def per_class_accuracy(table: pd.DataFrame, *, title: str = "Accuracy per class") -> go.Figure:
    """``table``: rows = methods, columns = classes, values in 0..1. One trace per method."""
    fig = go.Figure()
    for m in table.index:
        fig.add_trace(go.Bar(x=[_text(c) for c in table.columns], y=table.loc[m].to_numpy(dtype=float),
                             name=method_label(m), marker_color=method_color(m),
                             hovertemplate=f"{method_label(m)}<br>class %{{x}}: %{{y:.1%}}<extra></extra>"))
    fig.update_yaxes(range=[0, 1.05], tickformat=".0%", title_text="accuracy", tickvals=_accuracy_ticks(0.0))
    fig.update_xaxes(type="category", title_text="gold class")
    return _layout(fig, title, height=360, barmode="group",
                   legend=dict(orientation="h", y=1.12, x=1, xanchor="right"))


def method_agreement_heatmap(agree: pd.DataFrame, *, title: str = "How often two methods agree") -> go.Figure:
    """Method x method share of items with the same label (symmetric, diagonal 1)."""
    names = [method_label(m) for m in agree.index]
    z = agree.to_numpy(dtype=float)
    fig = go.Figure(go.Heatmap(z=z, x=names, y=names, zmin=max(0.0, float(np.nanmin(z)) - 0.05) if z.size else 0,
                               zmax=1, colorscale="Greens", text=np.round(z, 3), texttemplate="%{text:.1%}",
                               hovertemplate="%{y} vs %{x}<br>same label on %{z:.1%} of items<extra></extra>",
                               colorbar=dict(title=dict(text="agreement", side="right"), thickness=12,
                                             tickformat=".0%"), xgap=2, ygap=2))
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_xaxes(type="category")
    return _layout(fig, title, height=380)


def confidence_histograms(conf: Mapping[str, np.ndarray], *, bins: int = 20,
                          title: str = "How confident each method is") -> go.Figure:
    """Per method, the share of items per max-probability bin (lines; one trace per method)."""
    fig = go.Figure()
    edges = np.linspace(0, 1, bins + 1)
    mids = (edges[:-1] + edges[1:]) / 2
    for m, c in conf.items():
        c = np.asarray(c, dtype=float)
        h, _ = np.histogram(np.clip(c, 0, 1), bins=edges)
        share = h / max(h.sum(), 1)
        fig.add_trace(go.Scatter(x=mids, y=share, mode="lines+markers", name=method_label(m),
                                 line=dict(color=method_color(m), width=2), marker=dict(size=5),
                                 customdata=h, hovertemplate=f"{method_label(m)}<br>confidence ≈ %{{x:.2f}}"
                                 "<br>items: %{customdata} (%{y:.1%})<extra></extra>"))
    fig.update_xaxes(title_text="confidence (max probability)", range=[0, 1])
    fig.update_yaxes(title_text="share of items", tickformat=".0%")
    return _layout(fig, title, height=340, legend=dict(orientation="h", y=1.12, x=1, xanchor="right"))


def flip_matrix(counts: np.ndarray, classes: Sequence, *, row_name: str = "teacher",
                col_name: str = "student", title: str = "Label flips: teacher → student") -> go.Figure:
    """K x K counts of items with label (row) under ``row_name`` and label (col) under ``col_name``.

    Colour is log-scaled so the off-diagonal flips stay visible next to the big diagonal.
    """
    C = np.asarray(counts, dtype=float)
    names = [_short(c, 12) for c in classes]
    K = len(classes)
    fig = go.Figure(go.Heatmap(
        z=np.log10(C + 1), x=names, y=names, colorscale="Purples", customdata=C,
        text=C.astype(int) if K <= 12 else None, texttemplate="%{text}" if K <= 12 else None,
        hovertemplate=f"{method_label(row_name)} %{{y}} → {method_label(col_name)} %{{x}}<br>items: %{{customdata:,.0f}}<extra></extra>",
        colorbar=dict(title="items", thickness=12, tickvals=[0, 1, 2, 3, 4, 5],
                      ticktext=["0", "9", "99", "999", "9 999", "99 999"]), xgap=1, ygap=1,
    ))
    fig.update_yaxes(autorange="reversed", type="category", title_text=f"{method_label(row_name)} label")
    fig.update_xaxes(type="category", title_text=f"{method_label(col_name)} label")
    return _layout(fig, title, height=min(560, 220 + 32 * K))


def matrix_change_scatter(before: np.ndarray, after: np.ndarray, worker_ids: Sequence,
                          answers: np.ndarray, *, before_name: str = "teacher", after_name: str = "stage2",
                          title: str = "Worker accuracy before and after stage 2") -> go.Figure:
    """Per worker, mean diagonal (estimated accuracy) before vs after; marker size ~ activity.

    ``before``/``after``: (R, K, K) matrices. Two traces: the workers and the y = x line.
    """
    b = np.einsum("rjj->r", np.asarray(before)) / before.shape[1]
    a = np.einsum("rjj->r", np.asarray(after)) / after.shape[1]
    n = np.asarray(answers, dtype=float)
    size = 5 + 15 * np.sqrt(n / max(n.max(), 1))
    change = np.abs(np.asarray(after) - np.asarray(before)).sum(axis=(1, 2)) / before.shape[1]
    ids = [_text(w) for w in worker_ids]
    fig = go.Figure()
    fig.add_trace(go.Scattergl(
        x=b, y=a, mode="markers", name="workers", text=ids, customdata=np.stack([n, change], axis=1),
        marker=dict(size=size, color=method_color(after_name), opacity=0.7, line=dict(width=0.5, color="white")),
        hovertemplate=("worker %{text}<br>" + f"{method_label(before_name)}: " + "%{x:.2f}<br>"
                       + f"{method_label(after_name)}: " + "%{y:.2f}<br>answers: %{customdata[0]:.0f}"
                       "<br>L1 change / K: %{customdata[1]:.3f}<extra></extra>"),
    ))
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="no change",
                             line=dict(color="#999", dash="dash"), hoverinfo="skip"))
    fig.update_xaxes(title_text=f"{method_label(before_name)}: mean diagonal", range=[0, 1.02])
    fig.update_yaxes(title_text=f"{method_label(after_name)}: mean diagonal", range=[0, 1.02])
    return _layout(fig, title, height=380, legend=dict(orientation="h", y=1.1, x=1, xanchor="right"))
