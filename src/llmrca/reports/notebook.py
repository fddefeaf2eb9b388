"""What a workbench notebook calls first: :func:`setup` turns its parameters into a context.

The same call runs whether papermill injected the parameters or a researcher edited the
``parameters`` cell in JupyterLab, so both give the same results. The context validates the
parameters (:class:`~llmrca.reports.params.RunParameters`), resolves the store, the versions and
the output folder, opens the store per cell (DuckDB allows one writer: a notebook that holds it
would lock out the next one), masks what it shows when ``anonymize`` is set, and saves the
notebook's results for the report.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from llmrca.reports.anonymize import Anonymizer
from llmrca.reports.params import RunParameters
from llmrca.reports.stages import save_stage

__all__ = ["NotebookContext", "default_versions", "setup"]


def default_versions(store: Any, incident_id: str) -> list[str]:
    """The deployed version and its predecessor (previous first), when registered."""
    from llmrca.store.model_versions import model_version_names
    from llmrca.store.queries import incident_summary
    from llmrca.triage import previous_version

    record = incident_summary(store, incident_id).record
    registered = set(model_version_names(store))
    wanted = [previous_version(store, incident_id), record.get("deployed_model_version")]
    return [str(v) for v in dict.fromkeys(wanted) if v and str(v) in registered]


@dataclass(frozen=True)
class NotebookContext:
    """A notebook's resolved parameters and helpers.

    Attributes
    ----------
    params : RunParameters
    store_path : Path
    output_dir : Path
    versions : tuple of str
        The versions to replay (the parameter, or :func:`default_versions`).
    anonymizer : Anonymizer or None
    """

    params: RunParameters
    store_path: Path
    output_dir: Path
    versions: tuple[str, ...]
    anonymizer: Anonymizer | None = None

    @property
    def incident_id(self) -> str:
        return self.params.incident_id

    def store(self, read_only: bool = True):
        """Open the store (use as ``with ctx.store() as store:``; replays need
        ``read_only=False``)."""
        from llmrca.store import open_store

        return open_store(self.store_path, read_only=read_only)

    def show(self, frame: pd.DataFrame) -> pd.DataFrame:
        """A table to display (masked when anonymizing)."""
        return self.anonymizer.mask_frame(frame) if self.anonymizer else frame

    def text(self, value: Any) -> Any:
        """A string to display (masked when anonymizing)."""
        return self.anonymizer.mask(value) if self.anonymizer else value

    def record_table(self, record: dict[str, Any]) -> pd.DataFrame:
        """An incident record as a two-column table (field, value)."""
        rows = [(k, "" if v is None else str(v)) for k, v in record.items()
                if k not in ("content_hash",)]
        return self.show(pd.DataFrame(rows, columns=["field", "value"]))

    def save(self, name: str, data: dict[str, Any],
             tables: dict[str, pd.DataFrame] | None = None) -> Path:
        """Save this notebook's results for the report (``results/<name>.json``), with the
        interpreter and package path that produced them."""
        import llmrca

        data = {**data, "kernel": {"python": sys.executable, "llmrca": llmrca.__file__}}
        return save_stage(self.output_dir, name, self.incident_id, data, tables)

    def __repr__(self) -> str:
        return (f"NotebookContext(incident={self.incident_id!r}, store={str(self.store_path)!r}, "
                f"versions={list(self.versions)}, samples={self.params.samples}, "
                f"seed={self.params.seed}, output_dir={str(self.output_dir)!r}, "
                f"anonymize={self.params.anonymize})")


def setup(incident_id: str, store_path: str = "", versions: Sequence[str] = (), samples: int = 20,
          seed: int = 0, max_new_tokens: int = 32, output_dir: str = "", anonymize: bool = False,
          **extra: Any) -> NotebookContext:
    """Validate a notebook's parameters and resolve store, versions and output folder.

    Raises
    ------
    InvalidArgumentError
        A parameter has the wrong type or value.
    NotFoundError
        The incident is not in the store.
    """
    from llmrca.config import db_path
    from llmrca.store.queries import incident_summary

    params = RunParameters(incident_id=incident_id, store_path=store_path,
                           versions=tuple(versions), samples=samples, seed=seed,
                           max_new_tokens=max_new_tokens, output_dir=output_dir,
                           anonymize=anonymize, extra=dict(extra))
    path = db_path(store_path or None).expanduser().resolve()
    out = Path(output_dir).expanduser() if output_dir else \
        Path(os.environ.get("LLMRCA_REPORTS", "reports")) / incident_id / "manual"
    out.mkdir(parents=True, exist_ok=True)
    from llmrca.store import open_store

    with open_store(path, read_only=True) as store:
        incident_summary(store, incident_id)         # NotFoundError, listing the known ones
        chosen = tuple(params.versions) or tuple(default_versions(store, incident_id))
        anonymizer = None
        if anonymize:
            from llmrca.store.queries import interaction_frame

            frame = interaction_frame(store, incident_id)
            anonymizer = Anonymizer().learn([*frame["output"], *frame["messages"]])
    return NotebookContext(params=params, store_path=path, output_dir=out.resolve(),
                           versions=chosen, anonymizer=anonymizer)
