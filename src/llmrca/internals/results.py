"""Typed, immutable results of the internals analyses, with provenance and a store round trip.

Every result holds named tables (DataFrames) and ``info``: the versions with their
fingerprints, the parameters, the seed, the result id and whether it came from the store.
:meth:`InternalsResult.to_frame` gives the main table. Results are rows of
``internals_results`` (:mod:`llmrca.store.internals`) keyed by a content id of all that, so
asking again reads them back -- from a read-only store too.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pandas as pd

__all__ = [
    "RESULT_KINDS",
    "CausalCheckResult",
    "DirectionResult",
    "InternalsResult",
    "PatchingResult",
    "ProbeResult",
    "WeightDiffResult",
    "result_from_row",
]


@dataclass(frozen=True)
class InternalsResult:
    """Base class: ``tables`` (name -> DataFrame) and ``info`` (provenance)."""

    kind: ClassVar[str] = ""
    main: ClassVar[str] = ""
    tables: Mapping[str, pd.DataFrame] = field(repr=False)
    info: Mapping[str, Any] = field(default_factory=dict)

    def to_frame(self) -> pd.DataFrame:
        """The main table (a copy)."""
        return self.tables[self.main].copy()

    def table(self, name: str) -> pd.DataFrame:
        from llmrca.errors import UnknownNameError

        if name not in self.tables:
            raise UnknownNameError(f"{self.kind} table", name, self.tables)
        return self.tables[name].copy()

    @property
    def result_id(self) -> str:
        return str(self.info.get("result_id", ""))

    def records(self) -> dict[str, list[dict[str, Any]]]:
        """The tables as JSON-ready records (what the store keeps)."""
        return {name: json.loads(frame.to_json(orient="records"))
                for name, frame in self.tables.items()}


@dataclass(frozen=True)
class ProbeResult(InternalsResult):
    """Tables ``accuracy`` (version, task, layer, correct, n, accuracy, low, high) and
    ``transfer`` (train_version, test_version, task, layer, ...)."""

    kind: ClassVar[str] = "probes"
    main: ClassVar[str] = "accuracy"

    def best_layers(self) -> pd.DataFrame:
        frame = self.tables["accuracy"]
        return frame.loc[frame.groupby(["version", "task"])["accuracy"].idxmax()]


@dataclass(frozen=True)
class DirectionResult(InternalsResult):
    """Tables ``projections`` (version, layer, set, mean, sd, n), ``cosines`` (layer, version_a,
    version_b, cosine), ``directions`` (version, layer, norm, separation, vector)."""

    kind: ClassVar[str] = "directions"
    main: ClassVar[str] = "projections"

    def direction(self, version: str, layer: int):
        """The ``[d]`` difference-of-means vector of ``version`` at hidden-state ``layer``."""
        import numpy as np

        frame = self.tables["directions"]
        row = frame[(frame["version"] == version) & (frame["layer"] == int(layer))]
        if row.empty:
            from llmrca.errors import NotFoundError

            raise NotFoundError(f"no direction for version {version!r} at layer {layer}")
        return np.asarray(row.iloc[0]["vector"], dtype=np.float64)


@dataclass(frozen=True)
class CausalCheckResult(InternalsResult):
    """Table ``rates``: version, intervention, prompts, measure, baseline and intervened rates
    (clustered by prompt) and their difference (Newcombe interval, Fisher p)."""

    kind: ClassVar[str] = "causal"
    main: ClassVar[str] = "rates"


@dataclass(frozen=True)
class PatchingResult(InternalsResult):
    """Table ``cases`` (interaction_id, state, gaps, restored, share) and ``by_layer`` (state,
    mean share restored, mean gaps)."""

    kind: ClassVar[str] = "patching"
    main: ClassVar[str] = "by_layer"


@dataclass(frozen=True)
class WeightDiffResult(InternalsResult):
    """Table ``modules`` (layer, module, n_params, diff_norm, base_norm, relative) and ``total``."""

    kind: ClassVar[str] = "weight_diff"
    main: ClassVar[str] = "modules"

    @property
    def relative(self) -> float:
        """``|b - a| / |a|`` over all parameters."""
        return float(self.tables["total"]["relative"].iloc[0])


RESULT_KINDS: dict[str, type[InternalsResult]] = {
    cls.kind: cls for cls in (ProbeResult, DirectionResult, CausalCheckResult, PatchingResult,
                              WeightDiffResult)}


def result_from_row(row: Mapping[str, Any], *, cached: bool = True) -> InternalsResult:
    """Rebuild a typed result from a stored ``internals_results`` row."""
    cls = RESULT_KINDS[str(row["kind"])]
    tables = {name: pd.DataFrame.from_records(records) for name, records in row["tables"].items()}
    info = dict(row.get("info") or {})
    info.update({"result_id": row["result_id"], "cached": cached})
    return cls(tables=tables, info=info)
