"""Figures from result objects. Nothing computes here: every function takes a result (a
DataFrame with documented columns, a :class:`~llmrca.triage.Timeline`, ...) and returns a
matplotlib :class:`~matplotlib.figure.Figure`.

Figures are built without pyplot (no global figure state, nothing shown twice in a notebook);
:func:`show` displays one in Jupyter as a PNG and :func:`to_png` gives its bytes.
matplotlib is imported when a figure is drawn, not when this package is imported.
"""

from llmrca.viz.attribution import segment_bars_figure, token_heatmap_figure
from llmrca.viz.data_attribution import training_search_figure
from llmrca.viz.figures import (
    containment_figure,
    logprob_figure,
    rates_figure,
    scope_figure,
    show,
    timeline_figure,
    to_png,
)
from llmrca.viz.internals import (
    patching_figure,
    probe_accuracy_figure,
    projection_figure,
    weight_diff_figure,
)

__all__ = ["containment_figure", "logprob_figure", "patching_figure", "probe_accuracy_figure",
           "projection_figure", "rates_figure", "scope_figure", "segment_bars_figure", "show",
           "timeline_figure", "to_png", "token_heatmap_figure", "training_search_figure",
           "weight_diff_figure"]
