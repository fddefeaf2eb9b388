"""Ingesting an incident bundle (a folder) or a single file into the store.

A bundle is ingested in one transaction: a bad record aborts the run and nothing of it is written,
unless ``skip_invalid`` asks to write the good rows and keep each bad one in ``ingest_rejects``.
Ids are content hashes, so ingesting the same bundle twice adds nothing.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmrca.errors import InvalidArgumentError, LlmrcaError, NotFoundError, ValidationError
from llmrca.ingest.documents import (
    IncidentDocument,
    ModelVersionEntry,
    parse_incident,
    parse_models,
)
from llmrca.ingest.formats import detect_format, iter_json_records, read_interactions
from llmrca.ingest.personal import scrub_personal
from llmrca.ingest.records import InteractionRecord, Skipped
from llmrca.store import Store
from llmrca.store import ingest_writes as writes
from llmrca.store import interactions as interactions_table
from llmrca.store.model_registry import register_version

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
    roles: dict[str, int] = field(default_factory=dict)

    @property
    def inserted(self) -> int:
        return sum(f.inserted for f in self.files)

    @property
    def rejected(self) -> int:
        return sum(f.rejected for f in self.files)

    def summary(self) -> str:
        """What was read, stored, merged, left unchanged, skipped and rejected, per file."""
        lines = [(f"run {self.run_id[:12]}: incident {self.incident_id} "
                  f"({self.incident_action or 'unchanged'})")]
        for f in self.files:
            name = f"{f.file} [{f.format}]" if f.format else f.file
            unchanged = f.unchanged if f.format else f.rows - f.inserted - f.rejected
            merged = f", {f.merged} merged" if f.format else ""
            lines.append(f"  {name}: {f.rows} read, {f.inserted} new{merged}, "
                         f"{unchanged} unchanged, {f.rejected} rejected")
            if f.skipped:
                lines.append("    skipped: " + ", ".join(f"{n} {reason}"
                                                          for reason, n in f.skipped))
            if f.conflicts:
                lines.append(f"    {f.conflicts} field(s) on which sources disagree: the stored "
                             "value kept, both in interactions.conflicts")
            for hint in f.hints:
                lines.append(f"    note: {hint}")
        if self.roles:
            lines.append("  interactions: " + ", ".join(f"{n} {role}"
                                                        for role, n in self.roles.items()))
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
    root = folder.resolve()
    for item in [found[k] for k in ("incident", "interactions", "logs", "guardrail", "models")
                 if found[k] is not None] + found["training"]:
        target = item.resolve()
        if not target.is_relative_to(root):
            # A link out of the bundle would ingest (and quote in errors) a file nobody put in
            # it. Ingesting a file from elsewhere is an explicit `llmrca ingest FILE --incident`.
            raise ValidationError(str(item), None, None,
                                  "a file inside the bundle, not a link to one outside it "
                                  "(ingest that file explicitly with `llmrca ingest FILE "
                                  "--incident ID` if it belongs to this incident)", str(target))
    return found


def _count_records(path: Path) -> int:
    """JSON records in a file: non-blank lines of JSONL, 1 for a ``.json`` document."""
    if path.suffix == ".json":
        return 1
    with path.open("rb") as handle:
        return sum(1 for line in handle if line.strip())


def _ingest_interactions(store: Store, path: Path, incident_id: str, format_name: str | None,
                         personal_fields: Sequence[str], skip_invalid: bool, run_id: str
                         ) -> writes.FileIngestResult:
    try:
        detected: str | None = format_name or detect_format(path)
    except ValidationError as exc:
        if skip_invalid:
            return _reject_undetected(store, path, incident_id, personal_fields, run_id, exc)
        raise
    import pandas as pd

    from llmrca.ingest.merge import write_interactions

    records: list[InteractionRecord] = []
    errors: list[ValidationError] = []
    skipped: dict[str, int] = {}
    hints: dict[str, None] = {}
    for item in read_interactions(path, detected):
        if isinstance(item, ValidationError):
            if not skip_invalid:
                raise item
            errors.append(item)
        elif isinstance(item, Skipped):
            skipped[item.reason] = skipped.get(item.reason, 0) + item.count
            if item.hint:
                hints[item.hint] = None
        else:
            records.append(item)
    merged = write_interactions(store, records, incident_id, personal_fields)
    writes.insert_rejects(store, pd.DataFrame(
        [{"run_id": run_id, "incident_id": incident_id, "file": e.file, "line": e.line,
          "field": e.field, "reason": e.expected, "raw": None} for e in errors],
        columns=["run_id", "incident_id", "file", "line", "field", "reason", "raw"]))
    return writes.FileIngestResult(
        str(path), _count_records(path), merged.inserted, len(errors), format=detected,
        merged=merged.merged, unchanged=merged.unchanged, conflicts=merged.conflicts,
        skipped=tuple(sorted(skipped.items())), hints=tuple(hints))


def _reject_undetected(store: Store, path: Path, incident_id: str,
                       personal_fields: Sequence[str], run_id: str, error: ValidationError
                       ) -> writes.FileIngestResult:
    """A file whose format could not be detected, under ``--skip-invalid``: every line a reject.

    A line that is JSON is kept with its text, personal fields hashed (as in interaction
    metadata); a line that is not JSON, or holds text that cannot be stored, is kept without it.
    """
    personal = frozenset([*writes.ALWAYS_PERSONAL, *personal_fields])
    salt = store.salt
    rows = []
    for line, record in iter_json_records(path):
        if isinstance(record, ValidationError):
            field_name, reason, raw = record.field, record.expected, None
        else:
            field_name, reason = None, error.expected
            raw = json.dumps(scrub_personal(record, salt, personal), ensure_ascii=False)
        rows.append({"run_id": run_id, "incident_id": incident_id, "file": str(path),
                     "line": line, "field": field_name, "reason": reason, "raw": raw})
    import pandas as pd

    rejected = writes.insert_rejects(store, pd.DataFrame(
        rows, columns=["run_id", "incident_id", "file", "line", "field", "reason", "raw"]))
    sniffed = error.expected.startswith(("a record of a known format", "an unambiguous format"))
    why = error.expected if sniffed else "no line could be read to sniff it"
    hint = (f"the format could not be detected ({why}); every line is kept as a reject: "
            "pass --format, or fix the file")
    return writes.FileIngestResult(str(path), _count_records(path), 0, rejected, hints=(hint,))


def _register_models(store: Store, path: Path, entries: list[ModelVersionEntry]) -> list[str]:
    names = []
    for i, entry in enumerate(entries):
        if entry.source:
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
    # The bar is closed (and its line cleared) before any error is printed, so errors start
    # on a line of their own.
    with _progress(len(steps) + 1, progress, f"ingest {incident_id}") as bar, \
            store.transaction():
        action = writes.upsert_incident(store, incident.record)
        if incident.offending is not None:
            interactions_table.set_offending_selection(store, incident_id, incident.offending)
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
                _check_training_version(store, file)
                results.append(writes.ingest_training_file(
                    store, file, model_version=file.stem, run_id=run_id,
                    skip_invalid=skip_invalid))
            bar.update(1)
        roles = (interactions_table.role_counts(store, incident_id) if files["interactions"]
                 else {})
        report = IngestReport(run_id, incident_id, action, tuple(results), tuple(models), roles)
        writes.record_ingest_run(store, run_id, incident_id, str(folder), skip_invalid,
                                 {f.file: _counts(f) for f in results})
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
    if kind == "training":  # belongs to a model version, not to an incident
        file = _existing_file(path)
        run_id = uuid.uuid4().hex
        with store.transaction():
            result = writes.ingest_training_file(store, file,
                                                 model_version=model_version or file.stem,
                                                 run_id=run_id, skip_invalid=skip_invalid)
            writes.record_ingest_run(store, run_id, None, str(file), skip_invalid,
                                     {result.file: _counts(result)})
        return IngestReport(run_id, None, None, (result,), roles={})
    if not incident_id:
        article = "an" if kind[0] in "aeiou" else "a"
        raise InvalidArgumentError(f"{article} {kind} file needs the incident it belongs to "
                                   "(--incident)")
    file = _existing_file(path)
    run_id = uuid.uuid4().hex
    with store.transaction():
        personal = writes.incident_personal_fields(store, incident_id)
        if personal is None:
            raise NotFoundError(
                f"incident '{incident_id}' is not in the store; create it with `llmrca "
                f"incidents create {incident_id} --title ... --category ...` (or ingest its "
                "bundle, with incident.yaml) first")
        if kind == "interactions":
            result = _ingest_interactions(store, file, incident_id, format_name, personal,
                                          skip_invalid, run_id)
        else:  # logs or guardrail
            result = writes.ingest_log_file(store, file, incident_id=incident_id, stream=kind,
                                            run_id=run_id, personal_fields=personal,
                                            skip_invalid=skip_invalid)
        writes.record_ingest_run(store, run_id, incident_id, str(file), skip_invalid,
                                 {result.file: _counts(result)})
        roles = (interactions_table.role_counts(store, incident_id)
                 if kind == "interactions" else {})
    return IngestReport(run_id, incident_id, None, (result,), roles=roles)


def _existing_file(path: str | Path) -> Path:
    file = Path(path)
    if not file.is_file():
        raise ValidationError(str(file), None, None, "an existing file")
    return file


def _check_training_version(store: Store, file: Path) -> None:
    """``training_data/<version>.jsonl`` must name a registered version (or one models.yaml of
    the same bundle registers): fine-tuning data under a typo would be searched for nothing."""
    from llmrca.store.model_versions import model_version_names

    known = model_version_names(store)
    if file.stem not in known:
        raise ValidationError(
            str(file), None, None, "a training_data file named <model version>.jsonl after a "
            "registered version (" + (", ".join(known) or "none registered") + "; register it "
            "with `llmrca models add` or in the bundle's models.yaml)", file.name)


def _counts(result: writes.FileIngestResult) -> dict[str, Any]:
    counts: dict[str, Any] = {"rows": result.rows, "inserted": result.inserted,
                              "rejected": result.rejected}
    if result.format:
        counts.update(format=result.format, merged=result.merged, unchanged=result.unchanged,
                      conflicts=result.conflicts, skipped=dict(result.skipped))
    return counts


def ingest_training_file(store: Store, path: str | Path, model_version: str) -> int:
    """Ingest one version's fine-tuning data (``training_data/<version>.jsonl``); rows added."""
    report = ingest_file(store, path, kind="training", model_version=model_version)
    return report.inserted


def _progress(total: int, enabled: bool, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not enabled, desc=desc, unit="file", leave=False)
