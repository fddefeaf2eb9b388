"""Attribution figures: segment bars (versions side by side) and a token heatmap. They take
result objects or their frames; nothing is computed here."""

from __future__ import annotations

from typing import Any

import pandas as pd

from llmrca.viz.figures import _empty, _figure

__all__ = ["segment_bars_figure", "token_heatmap_figure"]


def _label(text: str, width: int = 28) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[:width - 1] + "…"


def segment_bars_figure(*results: Any):
    """Mean attribution per segment (over interactions), one bar group per segment and one bar
    per result (e.g. the safe and the failing version, or the removal and pad baselines)."""
    fig, (ax,) = _figure(height=3.4)
    frames = [(f"{r.model_version} ({r.baseline}, {r.target})", r.to_frame()) for r in results]
    frames = [(name, f) for name, f in frames if not f.empty and "segment" in f.columns]
    if not frames:
        _empty(ax, "no segment attributions")
        return fig
    segments = list(dict.fromkeys(s for _, f in frames for s in f["segment"]))
    texts = {}
    for _, f in frames:
        texts.update(f.drop_duplicates("segment").set_index("segment")["text"].to_dict())
    width = 0.8 / len(frames)
    for i, (name, f) in enumerate(frames):
        means = f.groupby("segment")["attribution"].mean().reindex(segments)
        xs = [x + (i - (len(frames) - 1) / 2) * width for x in range(len(segments))]
        ax.bar(xs, means.to_numpy(), width=width, label=name)
    ax.axhline(0, color="0.3", linewidth=0.8)
    ax.set_xticks(range(len(segments)))
    ax.set_xticklabels([f"{s}\n{_label(texts.get(s, ''))}" for s in segments], fontsize=7,
                       rotation=20, ha="right")
    ax.set_ylabel("attribution (mean over interactions)")
    ax.set_title("segment attribution toward the offending output", fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def token_heatmap_figure(result: Any, interaction_id: str | None = None):
    """IG attribution of each prompt token (columns) to each target token (rows) of one
    interaction (the first by default)."""
    rows = result.rows
    fig, (ax,) = _figure(width=10, height=3.0)
    if rows is None or len(rows) == 0 or result.method != "ig":
        _empty(ax, "no token attributions (method ig)")
        return fig
    row = rows.iloc[0] if interaction_id is None else \
        rows[rows["interaction_id"] == interaction_id].iloc[0]
    details = row["details"] or {}
    matrix = details.get("per_target") or [list(row["scores"])]
    data = pd.DataFrame(matrix).to_numpy(dtype=float)
    limit = float(abs(data).max()) or 1.0
    image = ax.imshow(data, aspect="auto", cmap="RdBu_r", vmin=-limit, vmax=limit)
    tokens = details.get("tokens", [])
    ax.set_xticks(range(len(tokens)))
    ax.set_xticklabels([str(t) for t in tokens], rotation=90, fontsize=6)
    ax.set_ylabel("target token")
    ax.set_title(f"token attribution (IG, {result.model_version})", fontsize=10)
    fig.colorbar(image, ax=ax, fraction=0.03)
    fig.tight_layout()
    return fig
