"""Ingesting an incident bundle (a folder) or a single file into the store.

A bundle is ingested in one transaction: a bad record aborts the run and nothing of it is written,
unless ``skip_invalid`` asks to write the good rows and keep each bad one in ``ingest_rejects``.
Ids are content hashes, so ingesting the same bundle twice adds nothing.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmrca.errors import InvalidArgumentError, LlmrcaError, NotFoundError, ValidationError
from llmrca.ingest.documents import (
    IncidentDocument,
    ModelVersionEntry,
    parse_incident,
    parse_models,
)
from llmrca.ingest.formats import read_interactions
from llmrca.ingest.records import InteractionRecord
from llmrca.store import Store
from llmrca.store import ingest_writes as writes

if TYPE_CHECKING:  # pandas is imported where used: it doubles the start-up of `llmrca ingest`
    import pandas as pd

INCIDENT_FILES = ("incident.yaml", "incident.yml", "incident.json")
LOG_SUFFIXES = (".jsonl", ".csv", ".parquet")
INTERACTION_FILES = ("interactions.jsonl", "interactions.json")


@dataclass(frozen=True)
class IngestReport:
    """What one ingest run did."""

    run_id: str
    incident_id: str | None
    incident_action: str | None
    files: tuple[writes.FileIngestResult, ...] = field(default_factory=tuple)
    models: tuple[str, ...] = ()

    @property
    def inserted(self) -> int:
        return sum(f.inserted for f in self.files)

    @property
    def rejected(self) -> int:
        return sum(f.rejected for f in self.files)

    def summary(self) -> str:
        lines = [(f"run {self.run_id[:12]}: incident {self.incident_id} "
                  f"({self.incident_action or 'not changed'})")]
        for f in self.files:
            lines.append(f"  {f.file}: {f.rows} rows, {f.inserted} new, {f.rejected} rejected")
        if self.models:
            lines.append("  model versions: " + ", ".join(self.models))
        return "\n".join(lines)


def find_bundle_files(folder: Path) -> dict[str, Any]:
    """The recognised files of a bundle folder, by role."""
    found: dict[str, Any] = {"incident": None, "interactions": None, "logs": None,
                             "guardrail": None, "models": None, "training": []}
    for name in INCIDENT_FILES:
        if (folder / name).is_file():
            found["incident"] = folder / name
            break
    for name in INTERACTION_FILES:
        if (folder / name).is_file():
            found["interactions"] = folder / name
            break
    for role, stem in (("logs", "logs"), ("guardrail", "guardrail_logs")):
        candidates = [folder / f"{stem}{suffix}" for suffix in LOG_SUFFIXES
                      if (folder / f"{stem}{suffix}").is_file()]
        if len(candidates) > 1:
            raise ValidationError(str(folder), None, stem,
                                  "one of " + ", ".join(f"{stem}{s}" for s in LOG_SUFFIXES),
                                  [c.name for c in candidates])
        found[role] = candidates[0] if candidates else None
    for name in ("models.yaml", "models.yml", "models.json"):
        if (folder / name).is_file():
            found["models"] = folder / name
            break
    training = folder / "training_data"
    if training.is_dir():
        found["training"] = sorted(training.glob("*.jsonl"))
    return found


def _hash(salt: str, value: str | None) -> str | None:
    # Same construction as the SQL side: sha256(salt || value), hex.
    if value is None:
        return None
    return hashlib.sha256((salt + value).encode("utf-8")).hexdigest()


def scrub_personal(value: Any, salt: str, personal: frozenset[str]) -> Any:
    """``value`` with every personal key, at any depth, replaced by its salted hash."""
    if isinstance(value, dict):
        return {key: (_hash(salt, item if isinstance(item, str) else json.dumps(item, default=str))
                      if key in personal and item is not None
                      else scrub_personal(item, salt, personal))
                for key, item in value.items()}
    if isinstance(value, list):
        return [scrub_personal(item, salt, personal) for item in value]
    return value


def interaction_rows(records: Iterable[InteractionRecord], incident_id: str, salt: str,
                     personal_fields: Sequence[str]) -> pd.DataFrame:
    """Interaction records as rows of the ``interactions`` table (ids hashed, ids content-based).

    ``user_id``, ``session_id`` and every field in ``personal_fields`` are hashed wherever they
    occur in the metadata and guardrail objects, nested ones included.
    """
    import pandas as pd

    personal = frozenset([*writes.ALWAYS_PERSONAL, *personal_fields])
    rows = []
    for rec in records:
        metadata = scrub_personal(dict(rec.metadata), salt, personal)
        guardrail = scrub_personal(rec.guardrail, salt, personal)
        rows.append({
            "interaction_id": writes.sha256_text(incident_id, rec.identity()),
            "incident_id": incident_id,
            "source_format": rec.source_format,
            "source_file": rec.source_file,
            "source_line": rec.source_line,
            "session_hash": _hash(salt, rec.session_id),
            "user_hash": _hash(salt, rec.user_id),
            "ts": rec.timestamp,
            "model_version": rec.model_version,
            "system_prompt": rec.system_prompt,
            "messages": json.dumps(rec.messages, ensure_ascii=False),
            "output": rec.output,
            "guardrail": json.dumps(guardrail) if guardrail is not None else None,
            "metadata": json.dumps(metadata, ensure_ascii=False, default=str),
        })
    frame = pd.DataFrame(rows, columns=[
        "interaction_id", "incident_id", "source_format", "source_file", "source_line",
        "session_hash", "user_hash", "ts", "model_version", "system_prompt", "messages", "output",
        "guardrail", "metadata"])
    frame["ts"] = pd.to_datetime(frame["ts"])
    frame["source_line"] = frame["source_line"].astype("Int64")
    return frame.drop_duplicates("interaction_id")


def _ingest_interactions(store: Store, path: Path, incident_id: str, format_name: str | None,
                         personal_fields: Sequence[str], skip_invalid: bool, run_id: str
                         ) -> writes.FileIngestResult:
    import pandas as pd

    records, errors = [], []
    for item in read_interactions(path, format_name):
        if isinstance(item, ValidationError):
            if not skip_invalid:
                raise item
            errors.append(item)
        else:
            records.append(item)
    rows = interaction_rows(records, incident_id, store.salt, personal_fields)
    inserted = writes.insert_interactions(store, rows)
    writes.insert_rejects(store, pd.DataFrame(
        [{"run_id": run_id, "incident_id": incident_id, "file": e.file, "line": e.line,
          "field": e.field, "reason": e.expected, "raw": None} for e in errors],
        columns=["run_id", "incident_id", "file", "line", "field", "reason", "raw"]))
    lines = {r.source_line for r in records} | {e.line for e in errors}
    return writes.FileIngestResult(str(path), len(lines), inserted, len(errors))


def _register_models(store: Store, path: Path, entries: list[ModelVersionEntry]) -> list[str]:
    names = []
    for i, entry in enumerate(entries):
        if entry.source:
            from llmrca.models import register_version

            try:
                register_version(store, entry.name, entry.source, revision=entry.revision,
                                 parent=entry.parent, notes=entry.notes)
            except LlmrcaError as exc:  # unknown parent, conflict, pickle weights, bad name
                raise ValidationError(str(path), entry.line, f"versions.{i}",
                                      f"a model version that can be registered: {exc}") from None
        if not writes.set_model_deployment(store, entry.name, deployed_from=entry.deployed_from,
                                           deployed_to=entry.deployed_to, parent=entry.parent,
                                           notes=entry.notes):
            raise ValidationError(str(path), entry.line, f"versions.{i}.source",
                                  f"a source: version '{entry.name}' is not registered yet")
        names.append(entry.name)
    return names


def ingest_bundle(store: Store, path: str | Path, *, format_name: str | None = None,
                  skip_invalid: bool = False, progress: bool = False) -> IngestReport:
    """Ingest an incident bundle folder (see docs/formats.md) in one transaction.

    Parameters
    ----------
    format_name : str, optional
        Input format of the interactions file; detected from its first record when omitted.
    skip_invalid : bool
        Write the good rows and keep each bad one, with its reason, in ``ingest_rejects``.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise ValidationError(str(folder), None, None, "an incident bundle folder")
    files = find_bundle_files(folder)
    if files["incident"] is None:
        raise ValidationError(str(folder), None, "incident.yaml",
                              "an incident file (" + ", ".join(INCIDENT_FILES) + ")")
    incident: IncidentDocument = parse_incident(files["incident"])
    incident_id = incident.record["incident_id"]
    personal = incident.personal_fields
    run_id = uuid.uuid4().hex
    steps: list[tuple[str, Path]] = []
    if files["models"]:
        steps.append(("models", files["models"]))
    if files["interactions"]:
        steps.append(("interactions", files["interactions"]))
    for role in ("logs", "guardrail"):
        if files[role]:
            steps.append((role, files[role]))
    steps += [("training", p) for p in files["training"]]

    results: list[writes.FileIngestResult] = []
    models: list[str] = []
    bar = _progress(len(steps) + 1, progress, f"ingest {incident_id}")
    with store.transaction():
        action = writes.upsert_incident(store, incident.record)
        bar.update(1)
        for role, file in steps:
            bar.set_postfix_str(file.name)
            if role == "models":
                models = _register_models(store, file, parse_models(file))
            elif role == "interactions":
                results.append(_ingest_interactions(
                    store, file, incident_id, format_name or incident.interactions_format,
                    personal, skip_invalid, run_id))
            elif role in ("logs", "guardrail"):
                results.append(writes.ingest_log_file(
                    store, file, incident_id=incident_id, stream=role, run_id=run_id,
                    personal_fields=personal, skip_invalid=skip_invalid))
            else:
                results.append(writes.ingest_training_file(
                    store, file, model_version=file.stem, run_id=run_id,
                    skip_invalid=skip_invalid))
            bar.update(1)
        report = IngestReport(run_id, incident_id, action, tuple(results), tuple(models))
        writes.record_ingest_run(store, run_id, incident_id, str(folder), skip_invalid,
                                 {f.file: {"rows": f.rows, "inserted": f.inserted,
                                           "rejected": f.rejected} for f in results})
    bar.close()
    return report


def ingest_file(store: Store, path: str | Path, *, incident_id: str | None = None,
                kind: str = "interactions",
                format_name: str | None = None, model_version: str | None = None,
                skip_invalid: bool = False) -> IngestReport:
    """Ingest one file into an existing incident (or, for ``kind="training"``, a model version).

    Parameters
    ----------
    incident_id : str, optional
        The incident the file belongs to; required for every kind but ``training``.
    kind : {"interactions", "logs", "guardrail", "training"}
    """
    if kind not in ("interactions", "logs", "guardrail", "training"):
        raise InvalidArgumentError(f"unknown kind {kind!r}; valid: interactions, logs, guardrail, "
                                   "training")
    if kind != "training" and not incident_id:
        raise InvalidArgumentError(f"a {kind} file needs the incident it belongs to (--incident)")
    file = Path(path)
    if not file.is_file():
        raise ValidationError(str(file), None, None, "an existing file")
    run_id = uuid.uuid4().hex
    with store.transaction():
        if kind != "training":
            found = store.con.execute(
                "SELECT personal_fields FROM incidents WHERE incident_id = ?", [incident_id]
            ).fetchall()
            if not found:
                raise NotFoundError(f"incident '{incident_id}' is not in the store; ingest its "
                                    f"bundle (with incident.yaml) first")
            personal = json.loads(found[0][0] or "[]")
        if kind == "interactions":
            result = _ingest_interactions(store, file, incident_id, format_name, personal,
                                          skip_invalid, run_id)
        elif kind in ("logs", "guardrail"):
            result = writes.ingest_log_file(store, file, incident_id=incident_id, stream=kind,
                                            run_id=run_id, personal_fields=personal,
                                            skip_invalid=skip_invalid)
        else:
            result = writes.ingest_training_file(store, file,
                                                 model_version=model_version or file.stem,
                                                 run_id=run_id, skip_invalid=skip_invalid)
        writes.record_ingest_run(store, run_id, None if kind == "training" else incident_id,
                                 str(file), skip_invalid,
                                 {result.file: {"rows": result.rows, "inserted": result.inserted,
                                                "rejected": result.rejected}})
    return IngestReport(run_id, None if kind == "training" else incident_id, None, (result,))


def ingest_training_file(store: Store, path: str | Path, model_version: str) -> int:
    """Ingest one version's fine-tuning data (``training_data/<version>.jsonl``); rows added."""
    report = ingest_file(store, path, kind="training", model_version=model_version)
    return report.inserted


def _progress(total: int, enabled: bool, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not enabled, desc=desc, unit="file", leave=False)
