"""Plotly figures for the dashboard: pure functions from the frames in `app.data` to `go.Figure`.

Per-trial lines are drawn as one WebGL trace per group (trials separated by gaps), so 5,000
trials cost two traces, not 5,000.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

COLORS = {"warm": "#2E6FD8", "random": "#E8833A", "unknown": "#8A8F98"}
LABELS = {"warm": "warm-started (hypernet)", "random": "random init", "unknown": "no warm_start attr"}
MAX_LINES_PER_GROUP = 600  # more lines add ink, not information; the mean band uses every trial


def _layout(fig: go.Figure, title: str | None = None, height: int = 380) -> go.Figure:
    # Title at the very top, legend in a row of its own between title and plot: nothing overlaps.
    fig.update_layout(title=dict(text=title, x=0.01, xanchor="left", y=1, yanchor="top", yref="container",
                                 pad=dict(t=6), font=dict(size=16)) if title else None,
                      height=height, margin=dict(l=10, r=10, t=84 if title else 30, b=10),
                      legend=dict(orientation="h", yanchor="bottom", y=1.02, xanchor="left", x=0),
                      hovermode="closest", template="plotly_white", modebar=dict(orientation="v"))
    return fig


def history(trials_df: pd.DataFrame, minimize: bool = True, metric: str = "val loss") -> go.Figure:
    """Objective of every completed trial by number, coloured by init, with the best-so-far line."""
    done = trials_df[(trials_df["state"] == "COMPLETE") & trials_df["value"].notna()].sort_values("number")
    fig = go.Figure()
    for init, rows in done.groupby("init", observed=True):
        fig.add_trace(go.Scattergl(
            x=rows["number"], y=rows["value"], mode="markers", name=LABELS[init],
            marker=dict(color=COLORS[init], size=6, opacity=0.75),
            hovertemplate="trial %{x}<br>" + metric + " %{y:.4f}<extra>" + LABELS[init] + "</extra>"))
    if len(done):
        best = done["value"].cummin() if minimize else done["value"].cummax()
        fig.add_trace(go.Scatter(x=done["number"], y=best, mode="lines", name="best so far",
                                 line=dict(color="#1B1F24", width=2, shape="hv")))
    fig.update_xaxes(title="trial")
    fig.update_yaxes(title=metric)
    return _layout(fig, "Optimization history")


def _gapped(curves: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x, y, trial numbers of all curves in one array, None between trials."""
    xs, ys, ns = [], [], []
    for number, c in curves.groupby("number", sort=False):
        xs.extend(c["step"].tolist() + [None])
        ys.extend(c["value"].tolist() + [None])
        ns.extend([number] * len(c) + [None])
    return np.array(xs, dtype=object), np.array(ys, dtype=object), np.array(ns, dtype=object)


def curves(curves_df: pd.DataFrame, bands: pd.DataFrame, seed: int = 0) -> go.Figure:
    """Val-loss curves side by side: warm-started | random init, shared y axis, mean in bold."""
    groups = [g for g in ("warm", "random", "unknown") if (curves_df["init"] == g).any()]
    fig = make_subplots(rows=1, cols=max(1, len(groups)), shared_yaxes=True, horizontal_spacing=0.04,
                        subplot_titles=[LABELS[g] for g in groups] or [""])
    for col, init in enumerate(groups, start=1):
        rows = curves_df[curves_df["init"] == init].sort_values(["number", "step"])
        numbers = rows["number"].unique()
        if len(numbers) > MAX_LINES_PER_GROUP:
            keep = np.random.default_rng(seed).choice(numbers, MAX_LINES_PER_GROUP, replace=False)
            rows = rows[rows["number"].isin(keep)]
        x, y, n = _gapped(rows)
        fig.add_trace(go.Scattergl(
            x=x, y=y, customdata=n, mode="lines", name=f"{LABELS[init]} trials", showlegend=False,
            line=dict(color=COLORS[init], width=1), opacity=0.25,
            hovertemplate="trial %{customdata}<br>step %{x}<br>val loss %{y:.4f}<extra></extra>"), row=1, col=col)
        band = bands[bands["init"] == init]
        fig.add_trace(go.Scatter(x=band["step"], y=band["mean"], mode="lines", name=f"{LABELS[init]} mean",
                                 line=dict(color=COLORS[init], width=3.5), showlegend=False,
                                 hovertemplate="step %{x}<br>mean val loss %{y:.4f}<extra>mean</extra>"),
                      row=1, col=col)
        fig.update_xaxes(title="step", row=1, col=col)
    fig.update_yaxes(title="val loss", row=1, col=1)
    fig = _layout(fig, "Val-loss curves, thin: single trials, bold: mean", height=420)
    fig.update_layout(margin=dict(t=70))
    return fig


def gain(bands: pd.DataFrame, target: float | None) -> go.Figure:
    """Mean val loss with the interquartile band per group, and the target line."""
    fig = go.Figure()
    for init in ("warm", "random", "unknown"):
        b = bands[bands["init"] == init].sort_values("step")
        if b.empty:
            continue
        color = COLORS[init]
        fig.add_trace(go.Scatter(x=pd.concat([b["step"], b["step"][::-1]]), y=pd.concat([b["q75"], b["q25"][::-1]]),
                                 fill="toself", fillcolor=_alpha(color, 0.18), line=dict(width=0), hoverinfo="skip",
                                 showlegend=False))
        fig.add_trace(go.Scatter(x=b["step"], y=b["mean"], mode="lines+markers", name=LABELS[init],
                                 line=dict(color=color, width=3), customdata=b["n"],
                                 hovertemplate="step %{x}<br>mean %{y:.4f}<br>%{customdata} trials<extra></extra>"))
    if target is not None:
        fig.add_hline(y=target, line=dict(color="#1B1F24", dash="dot"), annotation_text=f"target {target:.3f}",
                      annotation_position="top right")
    fig.update_xaxes(title="step")
    fig.update_yaxes(title="val loss")
    return _layout(fig, "Mean val loss (band: 25–75 %)", height=360)


def step0(trials_df: pd.DataFrame, bins: int = 40) -> go.Figure:
    """Distribution of the val loss before training: what the hypernet's prediction buys."""
    fig = go.Figure()
    values = trials_df.loc[trials_df["init"].isin(["warm", "random"]), "loss_step0"].dropna()
    size = (values.max() - values.min()) / bins if len(values) and values.max() > values.min() else None
    xbins = dict(start=values.min(), end=values.max() + (size or 0), size=size) if size else None
    for init in ("warm", "random"):
        v = trials_df.loc[trials_df["init"] == init, "loss_step0"].dropna()
        if len(v):  # shared bins: both groups on the same scale
            fig.add_trace(go.Histogram(x=v, name=LABELS[init], marker_color=COLORS[init], opacity=0.7, xbins=xbins))
    fig.update_layout(barmode="overlay")
    fig.update_xaxes(title="val loss at step 0")
    fig.update_yaxes(title="trials")
    return _layout(fig, "Loss before training", height=360)


def importances(values: dict[str, float]) -> go.Figure:
    items = sorted(values.items(), key=lambda kv: kv[1])
    fig = go.Figure(go.Bar(x=[v for _, v in items], y=[k for k, _ in items], orientation="h",
                           marker_color=COLORS["warm"], hovertemplate="%{y}: %{x:.3f}<extra></extra>"))
    fig.update_xaxes(title="importance (fANOVA)", range=[0, max(1e-9, max(values.values())) * 1.1])
    return _layout(fig, "Parameter importances", height=max(240, 60 + 36 * len(items)))


def versions(versions_df: pd.DataFrame) -> go.Figure:
    """Hypernet versions over time: a dotted line per version (also those never evaluated, such as
    a pretrained v0), validation loss where known, the versions in use joined by a step line, and
    for each refit its parent's loss on the same held-out set (the comparison that decided the
    promotion; the held-out set grows with the study, so only these pairs are like for like)."""
    df = versions_df.sort_values("version")
    promoted_mask = df["promoted"].astype(bool)
    fig = go.Figure()
    pairs = df[df["val_loss"].notna() & df["parent_val_loss"].notna()]
    if len(pairs):
        xs = [x for t in pairs["created_at"] for x in (t, t, None)]
        ys = [y for a, b in zip(pairs["parent_val_loss"], pairs["val_loss"]) for y in (a, b, None)]
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line=dict(color=COLORS["unknown"], width=1),
                                 hoverinfo="skip", showlegend=False))
        fig.add_trace(go.Scatter(
            x=pairs["created_at"], y=pairs["parent_val_loss"], mode="markers", name="parent, same held-out set",
            text=[f"v{v}" for v in pairs["version"]], marker=dict(color=COLORS["unknown"], size=9, symbol="circle-open"),
            hovertemplate="parent of %{text}<br>val loss %{y:.4f}<extra></extra>"))
    for _, row in df.iterrows():
        color = COLORS["warm"] if row["promoted"] else COLORS["unknown"]
        fig.add_shape(type="line", x0=row["created_at"], x1=row["created_at"], y0=0, y1=1, yref="paper",
                      line=dict(color=color, width=1, dash="dot"), layer="below")
        fig.add_annotation(x=row["created_at"], y=0.98, yref="paper", yanchor="top", xanchor="left",
                           text=f"v{row['version']}", showarrow=False, font=dict(color=color, size=12))
    known = df[df["val_loss"].notna()]
    in_use = known[promoted_mask[known.index]]
    fig.add_trace(go.Scatter(x=in_use["created_at"], y=in_use["val_loss"], mode="lines", name="in use",
                             line=dict(color=COLORS["warm"], width=2, shape="hv"), hoverinfo="skip"))
    for flag, name, color, symbol in ((True, "promoted", COLORS["warm"], "circle"),
                                      (False, "not promoted", COLORS["unknown"], "x")):
        rows = known[promoted_mask[known.index] == flag]
        if rows.empty:
            continue
        fig.add_trace(go.Scatter(
            x=rows["created_at"], y=rows["val_loss"], mode="markers", name=name,
            text=[f"v{v}" for v in rows["version"]], marker=dict(color=color, size=11, symbol=symbol),
            customdata=np.stack([rows["trials_used"], rows["device"], rows["seconds"]], axis=-1),
            hovertemplate="%{text}<br>val loss %{y:.4f}<br>%{customdata[0]} trials<br>%{customdata[1]}, "
                          "%{customdata[2]:.1f} s<extra></extra>"))
    fig.update_xaxes(title="created (UTC)")
    if len(known):
        scores = pd.concat([known["val_loss"], pairs["parent_val_loss"]])
        lo, hi = scores.min(), scores.max()
        pad = 0.2 * (hi - lo) if hi > lo else 0.1 * abs(hi) + 0.1  # room for the version labels
        fig.update_yaxes(range=[lo - pad, hi + 2 * pad])
    else:
        fig.update_yaxes(showticklabels=False)
    fig.update_yaxes(title="hypernet val loss")
    return _layout(fig, "Hypernet versions", height=340)


def version_gain(gains: pd.DataFrame) -> go.Figure:
    """Warm-vs-control gain per hypernet version (`app.analysis.version_gains`): the median final
    val loss gain and the mean step-0 gain side by side (their scales differ by an order of
    magnitude), a bar per version, promoted ones in the warm colour. A version without finished
    warm trials is a gap labelled as such, not a zero."""
    g = gains.sort_values("version")
    labels = [f"v{v}" for v in g["version"]]
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.08)
    promoted = g["promoted"].astype(bool)
    for col, (gain, warm, control, what) in enumerate(
            (("gain", "warm_final", "control_final", "median final"),
             ("step0_gain", "warm_step0", "control_step0", "mean step-0")), start=1):
        y = g[gain].where(g["warm_trials"] > 0)
        for flag, name, color in ((True, "promoted", COLORS["warm"]), (False, "not promoted", COLORS["unknown"])):
            rows = promoted == flag
            if not rows.any():
                continue
            custom = np.stack([g.loc[rows, "warm_trials"], g.loc[rows, warm], g.loc[rows, control]], axis=-1)
            fig.add_trace(go.Bar(
                x=[x for x, r in zip(labels, rows) if r], y=y[rows], marker_color=color, name=name,
                legendgroup=name, showlegend=col == 1, customdata=custom,
                text=[None if pd.isna(v) else f"{v:+.3f}" for v in y[rows]], textposition="outside",
                cliponaxis=False,
                hovertemplate="%{x} (" + name + ")<br>gain %{y:+.4f}<br>" + what + " val loss: warm "
                              "%{customdata[1]:.4f} vs control %{customdata[2]:.4f}<br>%{customdata[0]} warm "
                              "trials<extra></extra>"), row=1, col=col)
        for label, n in zip(labels, g["warm_trials"]):
            if n == 0:
                fig.add_annotation(x=label, y=0, text="no warm<br>trials", showarrow=False, yanchor="bottom",
                                   font=dict(color=COLORS["unknown"], size=11), row=1, col=col)
        known = y.dropna()
        hi, lo = max(0.0, known.max()) if len(known) else 1.0, min(0.0, known.min()) if len(known) else 0.0
        span = (hi - lo) or 1.0
        fig.update_yaxes(range=[lo - 0.15 * span * (lo < 0), hi + 0.25 * span], zeroline=True,
                         zerolinecolor="#1B1F24", zerolinewidth=1, row=1, col=col)
        fig.update_xaxes(type="category", categoryorder="array", categoryarray=labels, title="hypernet version",
                         row=1, col=col)
        fig.update_yaxes(title=f"{what} val loss: control − warm", row=1, col=col)
    fig = _layout(fig, "Warm-vs-control gain per hypernet version (> 0: its warm starts ended lower)", height=380)
    fig.update_layout(barmode="overlay", bargap=0.45)
    return fig


def _alpha(hex_color: str, alpha: float) -> str:
    r, g, b = (int(hex_color[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"
