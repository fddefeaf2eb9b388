"""The workbench's figures (see the package docstring)."""

from __future__ import annotations

import io
import math
from typing import Any

import pandas as pd

__all__ = ["containment_figure", "logprob_figure", "rates_figure", "scope_figure", "show",
           "timeline_figure", "to_png"]

#: Marker styles on the timeline, by kind.
_MARKER_STYLE = {"detected": ("tab:red", "-"), "deployed": ("tab:green", "--"),
                 "offending": ("tab:orange", ":")}


def _figure(width: float = 8.0, height: float = 3.2, rows: int = 1):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height * rows), dpi=100)
    axes = fig.subplots(rows, 1, squeeze=False)[:, 0]
    return fig, list(axes)


def _empty(ax, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def to_png(fig, dpi: int = 100) -> bytes:
    """The figure as PNG bytes (tight bounding box, so rotated labels are not cut)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def show(fig) -> None:
    """Display a figure in Jupyter as a PNG (an ``image/png`` output: HTML embeds it as a
    data URI)."""
    from IPython.display import Image, display

    display(Image(data=to_png(fig), format="png"))


def timeline_figure(timeline: Any):
    """Logged traffic and guardrail decisions per version over time, with the incident's
    markers (a :class:`~llmrca.triage.Timeline`)."""
    fig, (top, bottom) = _figure(rows=2, height=2.6)
    events = timeline.events
    logs = events[events["stream"] != "guardrail"]
    if len(logs):
        per = logs.groupby(["bucket", "model_version"])["events"].sum().unstack(fill_value=0)
        for version in per.columns:
            top.plot(per.index, per[version], marker="o", label=str(version))
        top.legend(fontsize=8, loc="upper left")
    else:
        _empty(top, "no log events")
    top.set_title(f"logged events per {timeline.bucket} and version", fontsize=10)
    guard = events[events["stream"] == "guardrail"]
    if len(guard):
        per = guard.groupby(["bucket", "model_version", "decision"])["events"].sum()
        for (version, decision), series in per.groupby(level=[1, 2]):
            values = series.droplevel([1, 2])
            bottom.plot(values.index, values.to_numpy(), marker=".",
                        label=f"{version}: {decision or '(none)'}")
        bottom.legend(fontsize=7, loc="upper left", ncol=2)
    else:
        _empty(bottom, "no guardrail events")
    bottom.set_title("guardrail decisions per version", fontsize=10)
    markers = timeline.markers
    for ax in (top, bottom):
        if not ax.has_data():
            continue
        for row in markers.itertuples():
            color, style = _MARKER_STYLE.get(str(row.kind), ("0.5", "-"))
            ax.axvline(row.ts, color=color, linestyle=style, linewidth=1, alpha=0.8)
        ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    shown = sorted({str(k) for k in markers["kind"]}) if len(markers) else []
    if shown:
        fig.text(0.01, -0.02, "vertical lines: " + ", ".join(
            f"{kind} ({_MARKER_STYLE.get(kind, ('grey', '-'))[0].replace('tab:', '')})"
            for kind in shown), fontsize=8)
    fig.tight_layout()
    return fig


def scope_figure(by_day: pd.DataFrame):
    """Share of logged traffic matching the failure, per day and version (a
    :attr:`~llmrca.triage.Scope.by_day` table)."""
    fig, (ax,) = _figure()
    if by_day is None or by_day.empty:
        _empty(ax, "no logged outputs")
        return fig
    for version, rows in by_day.groupby("model_version"):
        ax.plot(rows["day"], rows["share"] * 100, marker="o", label=str(version))
    ax.set_ylabel("% of traffic matching")
    ax.set_title("scope: traffic matching the failure, per day and version", fontsize=10)
    ax.legend(fontsize=8)
    ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    fig.tight_layout()
    return fig


def _column(frame: pd.DataFrame, *names: str):
    """The first of ``names`` that the frame has (result tables grow columns over time)."""
    return next((frame[name] for name in names if name in frame.columns), None)


def rates_figure(rates: pd.DataFrame, title: str = "reproduction rate per version"):
    """Rates with intervals per version (and variant): any table with ``model_version``,
    ``rate`` and ``low``/``high``; cluster-aware (``cluster_low``/``cluster_high``) and
    judge-corrected (``corrected_rate``) columns are drawn when present."""
    fig, (ax,) = _figure(height=3.0)
    if rates is None or rates.empty:
        _empty(ax, "no rates")
        return fig
    variants = list(dict.fromkeys(rates["variant"])) if "variant" in rates.columns else [None]
    versions = list(dict.fromkeys(rates["model_version"]))
    width = 0.8 / max(len(variants), 1)
    for i, variant in enumerate(variants):
        rows = rates if variant is None else rates[rates["variant"] == variant]
        xs, ys, lows, highs = [], [], [], []
        for j, version in enumerate(versions):
            row = rows[rows["model_version"] == version]
            if row.empty:
                continue
            r = row.iloc[0]
            low = _column(row, "cluster_low", "low")
            high = _column(row, "cluster_high", "high")
            xs.append(j + (i - (len(variants) - 1) / 2) * width)
            ys.append(float(r["rate"]) * 100)
            lows.append(float(low.iloc[0]) * 100 if low is not None else ys[-1])
            highs.append(float(high.iloc[0]) * 100 if high is not None else ys[-1])
        errors = [[max(y - lo, 0) for y, lo in zip(ys, lows)],
                  [max(hi - y, 0) for y, hi in zip(ys, highs)]]
        ax.bar(xs, ys, width=width, yerr=errors, capsize=3, label=str(variant or "rate"))
        corrected = _column(rows, "corrected_rate")
        if corrected is not None:
            ax.scatter(xs, [float(v) * 100 for v in corrected[:len(xs)]], marker="D", color="k",
                       zorder=3, label="judge-corrected" if i == 0 else None)
    ax.set_xticks(range(len(versions)))
    ax.set_xticklabels([str(v) for v in versions], fontsize=8)
    ax.set_ylim(0, 105)
    ax.set_ylabel("% of samples")
    ax.set_title(title + " (95% interval)", fontsize=10)
    if len(variants) > 1 or _column(rates, "corrected_rate") is not None:
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def logprob_figure(table: pd.DataFrame):
    """Teacher-forced log-probability of each offending output under each version (the
    ``table`` of a :class:`~llmrca.replay.CompareResult`)."""
    fig, (ax,) = _figure(height=3.0)
    if table is None or table.empty or "incident_logprob" not in table.columns:
        _empty(ax, "no teacher-forced scores")
        return fig
    versions = list(dict.fromkeys(table["model_version"]))
    for n, (interaction, rows) in enumerate(table.groupby("interaction_id", sort=False)):
        values = [rows.loc[rows["model_version"] == v, "incident_logprob"] for v in versions]
        ys = [float(v.iloc[0]) if len(v) and not pd.isna(v.iloc[0]) else math.nan
              for v in values]
        ax.plot(range(len(versions)), ys, marker="o", alpha=0.7, label=f"interaction {n + 1}")
    ax.set_xticks(range(len(versions)))
    ax.set_xticklabels([str(v) for v in versions], fontsize=8)
    ax.set_ylabel("log P(offending output)")
    ax.set_title("teacher-forced log-probability of the offending output", fontsize=10)
    if table["interaction_id"].nunique() <= 8:
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def containment_figure(options: pd.DataFrame):
    """Each containment option: failure left on the offending set against its cost on the
    context set (a :func:`~llmrca.triage.containment_options` table)."""
    fig, (ax,) = _figure(height=3.4)
    if options is None or options.empty:
        _empty(ax, "no containment options")
        return fig
    ys = range(len(options))
    after = options["failure_after"].astype(float).fillna(0) * 100
    context = options["context_rate"].astype(float).fillna(0) * 100
    ax.barh([y - 0.2 for y in ys], after, height=0.4, label="failure left (offending set)")
    ax.barh([y + 0.2 for y in ys], context, height=0.4,
            label="context affected (false-positive cost)")
    ax.set_yticks(list(ys))
    ax.set_yticklabels([str(o)[:40] for o in options["option"]], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("%")
    ax.set_xlim(0, 105)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title("containment options", fontsize=10)
    fig.tight_layout()
    return fig
