"""Figures of the internals results (:mod:`llmrca.internals`): they draw, never compute.

Each takes a result's table (``result.to_frame()`` or ``result.table(name)``) and returns a
matplotlib Figure.
"""

from __future__ import annotations

import pandas as pd

from llmrca.viz.figures import _empty, _figure

__all__ = ["patching_figure", "probe_accuracy_figure", "projection_figure",
           "weight_diff_figure"]


def probe_accuracy_figure(accuracy: pd.DataFrame, task: str | None = None):
    """Held-out probe accuracy per hidden-state index, one line per version (and task), with
    Wilson intervals. Columns: version, task, layer, accuracy, low, high."""
    fig, (ax,) = _figure(7.0, 3.2)
    frame = accuracy if task is None else accuracy[accuracy["task"] == task]
    if frame.empty:
        _empty(ax, "no probe results")
        return fig
    for (version, name), group in frame.groupby(["version", "task"]):
        group = group.sort_values("layer")
        ax.errorbar(group["layer"], group["accuracy"],
                    yerr=[group["accuracy"] - group["low"], group["high"] - group["accuracy"]],
                    marker="o", capsize=3, label=f"{version} ({name})")
    ax.axhline(0.5, color="0.7", linestyle=":")
    ax.set_xlabel("hidden-state index (0 = embeddings)")
    ax.set_ylabel("held-out accuracy")
    ax.set_ylim(0.0, 1.05)
    ax.legend(fontsize="small")
    return fig


def projection_figure(projections: pd.DataFrame):
    """Mean projection on each version's refusal direction per layer, by prompt set.
    Columns: version, layer, set, mean, sd."""
    versions = list(dict.fromkeys(projections["version"])) if len(projections) else []
    fig, axes = _figure(7.0, 2.6, rows=max(1, len(versions)))
    if not versions:
        _empty(axes[0], "no projections")
        return fig
    for ax, version in zip(axes, versions):
        frame = projections[projections["version"] == version]
        for name, group in frame.groupby("set"):
            group = group.sort_values("layer")
            ax.errorbar(group["layer"], group["mean"], yerr=group["sd"].fillna(0), marker="o",
                        capsize=3, label=str(name))
        ax.axhline(0, color="0.7", linestyle=":")
        ax.set_title(version, fontsize="medium")
        ax.set_ylabel("projection")
        ax.legend(fontsize="small")
    axes[-1].set_xlabel("hidden-state index")
    return fig


def patching_figure(by_layer: pd.DataFrame):
    """Share of the contrastive gap restored per patched hidden-state index (mean, min-max).
    Columns: state, share, share_min, share_max."""
    fig, (ax,) = _figure(7.0, 3.0)
    if by_layer.empty:
        _empty(ax, "no patching results")
        return fig
    frame = by_layer.sort_values("state")
    ax.plot(frame["state"], frame["share"], marker="o", label="mean over interactions")
    ax.fill_between(frame["state"], frame["share_min"], frame["share_max"], alpha=0.2,
                    label="min-max")
    ax.axhline(1.0, color="0.7", linestyle=":")
    ax.axhline(0.0, color="0.7", linestyle=":")
    ax.set_xlabel("patched hidden-state index")
    ax.set_ylabel("share of gap restored")
    ax.legend(fontsize="small")
    return fig


def weight_diff_figure(modules: pd.DataFrame, value: str = "relative"):
    """Bars of the weight change per (layer, module). Columns: layer, module, ``value``."""
    fig, (ax,) = _figure(8.0, 3.2)
    if modules.empty:
        _empty(ax, "no weight diff")
        return fig
    labels = [f"{m}" if layer < 0 else f"L{layer}.{m}"
              for layer, m in zip(modules["layer"], modules["module"])]
    ax.bar(range(len(modules)), modules[value], color="tab:blue")
    ax.set_xticks(range(len(modules)))
    ax.set_xticklabels(labels, rotation=60, ha="right", fontsize="small")
    ax.set_ylabel({"relative": "|b - a| / |a|", "diff_norm": "|b - a|"}.get(value, value))
    return fig
