"""Judging replayed samples: resolve the judges, label each distinct sample once per judge
configuration (stored judgements are reused), combine the labels."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from llmrca import ids
from llmrca.store.cache import ContentTable, compute_missing

__all__ = ["JUDGEMENT_FRAME_COLUMNS", "judge_identity", "judge_samples", "resolve_judges"]

JUDGEMENT_FRAME_COLUMNS = ("sample_id", "judge", "judge_config_hash", "label", "score", "details")

JUDGEMENTS = ContentTable(
    "judgements", "judgement_id",
    ("judgement_id", "sample_id", "judge", "judge_config_hash", "label", "score", "details"))


def resolve_judges(judges: Sequence[Any] | None, category: str | None) -> list[Any]:
    """Judge objects from specs or objects; None: the category's defaults; ``()``: none."""
    if judges is not None and len(judges) == 0:
        return []
    from llmrca import judges as judges_module

    names = list(judges) if judges is not None else list(judges_module.default_judges(category))
    return [judges_module.get_judge(j) if isinstance(j, str) else j for j in names]


def _name(judge: Any) -> str:
    return str(getattr(judge, "name", type(judge).__name__))


def _config_hash(judge: Any) -> str | None:
    value = getattr(judge, "config_hash", None)
    return str(value) if value else None


def judge_identity(judges: Sequence[Any]) -> list[dict[str, Any]]:
    """What the run records of its judges: name and configuration hash (None for a judge object
    without one; its class is named instead)."""
    return [{"name": _name(j), "config_hash": _config_hash(j)}
            | ({} if _config_hash(j) else {"class": f"{type(j).__module__}.{type(j).__qualname__}"})
            for j in judges]


def _details(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def _combine(frame: pd.DataFrame) -> pd.Series:
    """Combined label per sample_id (``llmrca.judges.combine``: unsafe if any judge says so)."""
    if frame.empty:
        return pd.Series(dtype=object)
    from llmrca.judges import combine

    combined = combine(frame)
    if isinstance(combined, pd.Series):
        return combined
    return combined.set_index("sample_id")["label"]


def stored_judgements(store, sample_ids: Sequence[str],
                      judges: Sequence[dict[str, Any]] | None) -> pd.DataFrame:
    """Stored judgements of ``sample_ids`` by the recorded judges (all judges when None)."""
    from llmrca.store.judgements import judgements_frame

    names = None if judges is None else [j["name"] for j in judges]
    frame = judgements_frame(store, sample_ids, names)
    if judges is not None and len(frame):
        wanted = {(j["name"], j.get("config_hash")) for j in judges}
        keep = [(n, h) in wanted or (n, None) in wanted
                for n, h in zip(frame["judge"], frame["judge_config_hash"])]
        frame = frame[keep]
    return frame[list(JUDGEMENT_FRAME_COLUMNS)].reset_index(drop=True)


def labels_from(judgements: pd.DataFrame, n_judges: int,
                known_agreement: Any = None) -> tuple[pd.Series, dict[str, Any]]:
    """Combined labels per sample and the agreement report (two or more judges).

    ``known_agreement``: the report a finished run stored for these same judgements; it is
    reused rather than recomputed (computing it imports scikit-learn, seconds on a warm run).
    """
    labels = _combine(judgements)
    info: dict[str, Any] = {}
    if known_agreement is not None:
        info["agreement"] = known_agreement
    elif n_judges > 1 and len(judgements):
        try:
            from llmrca.judges import agreement

            found = agreement(judgements)
            info["agreement"] = found.to_dict("records") if hasattr(found, "to_dict") else found
        except Exception as exc:  # noqa: BLE001 - agreement is a report, not a reason to fail
            info["agreement"] = f"unavailable: {exc}"
    return labels, info


def judge_samples(store, samples: pd.DataFrame, judges: list[Any], context: pd.DataFrame,
                  known_agreement: Any = None) -> tuple[pd.DataFrame, pd.Series, dict[str, Any]]:
    """Judge each distinct sample once per judge configuration; reuse stored judgements.

    Returns ``(judgements, combined labels by sample_id, info)``; ``known_agreement`` as in
    :func:`labels_from`.
    """
    empty = pd.DataFrame(columns=list(JUDGEMENT_FRAME_COLUMNS))
    if not judges or samples.empty:
        return empty, pd.Series(dtype=object), {}
    inputs = (samples.merge(context, on=["interaction_id", "variant"], how="left")
              .drop_duplicates("sample_id")[["sample_id", "output", "prompt", "incident_output",
                                             "category"]])
    by_id = inputs.set_index("sample_id", drop=False)
    frames = []
    for judge in judges:
        name, config_hash = _name(judge), _config_hash(judge)
        if config_hash is None:
            # Without a configuration hash its labels cannot be looked up: judge everything.
            fresh = judge.judge(inputs)
            from llmrca.store.judgements import write_judgements

            if not store.read_only:
                write_judgements(store, fresh)
            frames.append(fresh[list(JUDGEMENT_FRAME_COLUMNS)])
            continue
        items = {ids.judgement_id(s, name, config_hash): s for s in inputs["sample_id"]}

        def compute(sample_ids: list[str], judge=judge, name=name, config_hash=config_hash):
            out = judge.judge(by_id.loc[sample_ids].reset_index(drop=True))
            return [{"judgement_id": ids.judgement_id(r.sample_id, name, config_hash),
                     "sample_id": r.sample_id, "judge": name, "judge_config_hash": config_hash,
                     "label": r.label, "score": None if pd.isna(r.score) else float(r.score),
                     "details": _details(r.details)} for r in out.itertuples(index=False)]

        compute_missing(store, JUDGEMENTS, items, compute)
        frames.append(stored_judgements(store, list(items.values()),
                                        [{"name": name, "config_hash": config_hash}]))
    judgements = pd.concat(frames, ignore_index=True)
    labels, info = labels_from(judgements, len(judges), known_agreement)
    names = [_name(j) for j in judges]
    info = {"judges": names,
            "judge_config_hashes": {n: (_config_hash(j) or (f["judge_config_hash"].iloc[0]
                                                            if len(f) else None))
                                    for n, j, f in zip(names, judges, frames)},
            **info}
    return judgements, labels, info
