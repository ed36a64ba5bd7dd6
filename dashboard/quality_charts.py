"""Charts of the Labels, Item quality and Results pages: data in, Plotly figure out (no streamlit).

Accuracy axes start at 0 (no cut axis), every accuracy bar carries its 95 % interval, and
confidence charts split the items into right and wrong when gold labels exist, so a pile of
confident items says whether that confidence is earned.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from .charts import _layout, method_color, method_label

try:  # the sec engineer's escaping helper; plain text until it lands
    from .text import plain
except ImportError:  # pragma: no cover
    def plain(v) -> str:
        return str(v).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def confidence_distribution(bins: pd.DataFrame, *, title: str = "Confidence of the inferred labels",
                            what: str = "confidence (max probability)") -> go.Figure:
    """Items per confidence bin; with a ``right`` column, stacked right (green) / wrong (red) on gold items.

    ``bins``: columns ``low``, ``high``, ``items`` and optionally ``right`` (see
    ``quality_view.confidence_bins``).
    """
    mids = ((bins["low"] + bins["high"]) / 2).to_numpy()
    width = float((bins["high"] - bins["low"]).iloc[0]) * 0.95
    lab = [f"{a:.1f}–{b:.1f}" for a, b in zip(bins["low"], bins["high"])]
    fig = go.Figure()
    if "right" in bins:
        right = bins["right"].to_numpy()
        wrong = bins["items"].to_numpy() - right
        fig.add_trace(go.Bar(x=mids, y=right, width=width, name="right (gold)", marker_color="#54a24b",
                             customdata=lab, hovertemplate="confidence %{customdata}<br>right: %{y}<extra></extra>"))
        fig.add_trace(go.Bar(x=mids, y=wrong, width=width, name="wrong (gold)", marker_color="#e45756",
                             customdata=lab, hovertemplate="confidence %{customdata}<br>wrong: %{y}<extra></extra>"))
        fig.update_layout(barmode="stack")
        ytitle = "gold items"
    else:
        fig.add_trace(go.Bar(x=mids, y=bins["items"].to_numpy(), width=width, name="items",
                             marker_color="#4c78a8", customdata=lab,
                             hovertemplate="confidence %{customdata}<br>items: %{y}<extra></extra>"))
        ytitle = "items"
    fig.update_xaxes(title_text=what, range=[0, 1])
    fig.update_yaxes(title_text=ytitle, rangemode="tozero")
    return _layout(fig, title, height=320, legend=dict(orientation="h", y=1.12, x=1, xanchor="right"))


def accuracy_with_intervals(rows: pd.DataFrame, *, title: str = "Accuracy with 95 % intervals") -> go.Figure:
    """One bar per (split, method) from 0 to 100 %, with its 95 % interval as error bars.

    ``rows``: columns ``split``, ``method``, ``accuracy``, ``low``, ``high`` (``n`` optional, in the hover).
    """
    fig = go.Figure()
    for s, (split, d) in enumerate(rows.groupby("split", sort=False)):
        methods = d["method"].tolist()
        acc = d["accuracy"].to_numpy(dtype=float)
        fig.add_trace(go.Bar(
            x=[method_label(m) for m in methods], y=acc, name=plain(split),
            marker=dict(color=[method_color(m) for m in methods], pattern_shape=["", "/", ".", "x"][s % 4],
                        line=dict(color="white", width=1)),
            error_y=dict(type="data", symmetric=False, array=d["high"].to_numpy(dtype=float) - acc,
                         arrayminus=acc - d["low"].to_numpy(dtype=float), color="#333", thickness=1.5, width=4),
            text=[f"{a:.1%}" for a in acc], textposition="inside",
            customdata=np.stack([d["low"], d["high"], d.get("n", pd.Series([np.nan] * len(d)))], axis=1),
            hovertemplate=plain(split) + "<br>%{x}: %{y:.1%}<br>95% interval %{customdata[0]:.1%} – "
                          "%{customdata[1]:.1%}<br>items: %{customdata[2]:.0f}<extra></extra>"))
    fig.update_yaxes(range=[0, 1.0], tickformat=".0%", title_text="accuracy (axis from 0)")
    return _layout(fig, title, height=380, barmode="group",
                   legend=dict(orientation="h", y=1.12, x=1, xanchor="right"))


def reliability(curves: Mapping[str, pd.DataFrame], *, title: str = "Reliability: confidence vs accuracy"
                ) -> go.Figure:
    """Per classifier, accuracy against mean confidence per confidence bin (the diagonal = calibrated).

    ``curves[method]``: columns ``confidence`` (mean in the bin), ``accuracy``, ``n`` (items in the bin).
    Marker size grows with ``n``.
    """
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="calibrated", hoverinfo="skip",
                             line=dict(color="#999", dash="dash")))
    for m, d in curves.items():
        n = d["n"].to_numpy(dtype=float)
        fig.add_trace(go.Scatter(
            x=d["confidence"], y=d["accuracy"], mode="lines+markers", name=method_label(m),
            line=dict(color=method_color(m)), marker=dict(size=5 + 12 * np.sqrt(n / max(n.max(), 1))),
            customdata=n, hovertemplate=f"{method_label(m)}<br>confidence %{{x:.2f}}<br>accuracy %{{y:.1%}}"
                                        "<br>items: %{customdata:.0f}<extra></extra>"))
    fig.update_xaxes(title_text="confidence (max probability)", range=[0, 1.02])
    fig.update_yaxes(title_text="accuracy on gold", range=[0, 1.02], tickformat=".0%")
    return _layout(fig, title, height=380, legend=dict(orientation="h", y=1.12, x=1, xanchor="right"))


def reliability_curve(proba: np.ndarray, truth: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """Mean confidence, accuracy and count per confidence bin (bins with no item left out)."""
    p = np.asarray(proba, dtype=float)
    t = np.asarray(truth)
    m = t >= 0
    conf = p[m].max(axis=1)
    right = p[m].argmax(axis=1) == t[m]
    idx = np.clip((conf * bins).astype(int), 0, bins - 1)
    n = np.bincount(idx, minlength=bins)
    ok = n > 0
    return pd.DataFrame({"confidence": (np.bincount(idx, weights=conf, minlength=bins)[ok] / n[ok]),
                         "accuracy": np.bincount(idx, weights=right, minlength=bins)[ok] / n[ok], "n": n[ok]})


def quality_vs_truth(table: pd.DataFrame, bins: int = 10) -> pd.DataFrame:
    """Calibration of the quality score on gold items: per quality bin, mean quality and share right."""
    d = table[table["consensus_correct"].notna()] if "consensus_correct" in table else table.iloc[0:0]
    q = d["quality"].to_numpy(dtype=float)
    r = d["consensus_correct"].astype(bool).to_numpy() if len(d) else np.zeros(0, bool)
    idx = np.clip((q * bins).astype(int), 0, bins - 1)
    n = np.bincount(idx, minlength=bins)
    ok = n > 0
    return pd.DataFrame({"confidence": np.bincount(idx, weights=q, minlength=bins)[ok] / n[ok],
                         "accuracy": np.bincount(idx, weights=r, minlength=bins)[ok] / n[ok], "n": n[ok]})

