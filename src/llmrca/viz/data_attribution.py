"""Figures of training-data search (:mod:`llmrca.data_attribution`): they draw, never compute."""

from __future__ import annotations

import pandas as pd

from llmrca.viz.figures import _empty, _figure

__all__ = ["training_search_figure"]


def _label(row, width: int = 48) -> str:
    text = f"{row['example_id']}: {row.get('prompt') or ''}"
    return text if len(text) <= width else text[:width - 1] + "…"


def training_search_figure(table: pd.DataFrame, top: int = 10):
    """The ``top`` examples of each signal and of the combined ranking, one panel each.

    Bars are each ranking's own score (BM25 / hidden-state percentile products, gradient
    cosines, fused reciprocal ranks); labels are example id and prompt. Examples in the combined
    top are drawn dark in every panel, so agreement between signals shows at a glance.
    ``table`` is :meth:`TrainingSearchResult.to_frame`.
    """
    signals = [c[:-len("_score")] for c in table.columns
               if c.endswith("_score") and f"{c[:-len('_score')]}_rank" in table.columns]
    panels = signals + ["combined"]
    fig, axes = _figure(7.5, 0.28 * top + 1.0, rows=len(panels))
    if table.empty:
        _empty(axes[0], "no training examples")
        return fig
    combined_top = set(table.sort_values("rank")["example_id"].head(top))
    for ax, panel in zip(axes, panels):
        if panel == "combined":
            frame = table.sort_values("rank").head(top)
            values = frame["score"]
        else:
            frame = table.sort_values([f"{panel}_rank", "example_id"]).head(top)
            values = frame[f"{panel}_score"]
        colours = ["#1f4e79" if i in combined_top else "#9dc3e6" for i in frame["example_id"]]
        positions = list(range(len(frame)))[::-1]
        ax.barh(positions, values, color=colours)
        ax.set_yticks(positions)
        ax.set_yticklabels([_label(r) for r in frame.to_dict("records")], fontsize="x-small")
        ax.set_title(f"{panel}: top {len(frame)}", fontsize="medium")
        ax.set_xlabel("score" if panel == "combined" else f"{panel} score", fontsize="small")
    return fig
