"""What each notebook leaves for the report: ``<output_dir>/results/<notebook>.json``.

A stage result is a small JSON document: ``stage``, ``incident_id``, ``data`` (plain values) and
``tables`` (DataFrames as ``{"columns": [...], "records": [...]}``). The report notebook reads
them back with :func:`load_stages`; the replays behind them are in the store (content-addressed,
so the report never recomputes them).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["STAGE_FORMAT", "Stage", "load_stages", "save_stage", "to_jsonable"]

STAGE_FORMAT = 1


def to_jsonable(value: Any) -> Any:
    """Plain JSON values: NaN/NaT -> None, timestamps -> ISO strings, numpy scalars -> Python."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, int):
        return value
    if isinstance(value, (pd.Timestamp, datetime, date)):
        return None if pd.isna(value) else value.isoformat()
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, pd.DataFrame):
        return {"columns": [str(c) for c in value.columns],
                "records": [[to_jsonable(v) for v in row] for row in
                            value.itertuples(index=False, name=None)]}
    if hasattr(value, "item"):                      # numpy scalar
        return to_jsonable(value.item())
    if value is pd.NaT:
        return None
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return str(value)


@dataclass(frozen=True)
class Stage:
    """One notebook's results."""

    name: str
    incident_id: str
    data: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)

    def table(self, name: str) -> pd.DataFrame:
        """A table by name (an empty frame when the notebook did not save it)."""
        return self.tables.get(name, pd.DataFrame())


def save_stage(output_dir: str | Path, name: str, incident_id: str, data: dict[str, Any],
               tables: dict[str, pd.DataFrame] | None = None) -> Path:
    """Write one notebook's results (overwrites that notebook's previous results)."""
    folder = Path(output_dir) / "results"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    document = {"format": STAGE_FORMAT, "stage": name, "incident_id": incident_id,
                "data": to_jsonable(data),
                "tables": {k: to_jsonable(v) for k, v in (tables or {}).items()}}
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(document, indent=1, ensure_ascii=False), encoding="utf-8")
    tmp.replace(path)
    return path


def load_stages(output_dir: str | Path) -> dict[str, Stage]:
    """Every stage result under ``output_dir/results``, by notebook name."""
    stages: dict[str, Stage] = {}
    folder = Path(output_dir) / "results"
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        document = json.loads(path.read_text(encoding="utf-8"))
        tables = {k: pd.DataFrame(v["records"], columns=v["columns"])
                  for k, v in document.get("tables", {}).items()}
        stages[document["stage"]] = Stage(document["stage"], document["incident_id"],
                                          document.get("data", {}), tables)
    return stages
