"""The model registry: named versions of a model, their source, lineage and fingerprint.

A version is a name (``assistant-v2``) bound to a source (a local folder or a hub id), an optional
hub revision, a parent version, a deployment window and a fingerprint of its files taken at
registration. Investigations refer to versions by name; loading checks the fingerprint so a result
is never silently computed on other weights than the ones registered.

It lives in the store layer, with the fingerprinting it needs one level lower
(:mod:`llmrca.fingerprint`), so that ingesting a bundle's ``models.yaml`` registers versions in the
bundle's transaction without importing upward from ``ingest/`` into ``models/``;
:mod:`llmrca.models` re-exports it. :mod:`llmrca.store.model_versions` holds the statements.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from llmrca.errors import ModelLoadError, ModelRegistryError, UnknownNameError, VersionConflictError
from llmrca.fingerprint import compute_fingerprint, fingerprint_files, is_local_source
from llmrca.store import model_versions as rows
from llmrca.store.core import Store

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:+\-]*$")


@dataclass(frozen=True)
class ModelVersion:
    """One registered model version.

    Attributes
    ----------
    name : str
        The version name used everywhere else (``assistant-v2``).
    source : str
        Absolute path of a local model folder, or a hub id.
    revision : str or None
        Hub revision (branch, tag or commit) for hub ids.
    parent : str or None
        The version this one was derived from (fine-tuned from, replaced).
    deployed_from, deployed_to : datetime or None
        The production deployment window, naive UTC.
    fingerprint : str or None
        SHA-256 of the config, weights and tokenizer files; ``None`` for a hub id not yet loaded.
    notes : str or None
        Free text.
    allow_pickle : bool
        Whether loading may unpickle ``*.bin`` weights (opted in at registration).
    created_at, updated_at : datetime or None
        When the row was written (naive UTC).
    """

    name: str
    source: str
    revision: str | None = None
    parent: str | None = None
    deployed_from: datetime | None = None
    deployed_to: datetime | None = None
    fingerprint: str | None = None
    notes: str | None = None
    allow_pickle: bool = False
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def is_local(self) -> bool:
        """True when the source is a folder on this machine (or meant to be)."""
        return is_local_source(self.source)


def _as_utc(value: datetime | str | None, field: str) -> datetime | None:
    """A datetime or ISO-8601 string as naive UTC; naive inputs are taken to be UTC already."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ModelRegistryError(
                f"{field}: expected a datetime or an ISO-8601 string such as "
                f"'2024-05-01T12:00:00Z', got {value!r}") from None
    elif not isinstance(value, datetime):
        raise ModelRegistryError(f"{field}: expected a datetime or an ISO-8601 string, "
                                 f"got {type(value).__name__}")
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    return value


def _from_row(row: dict) -> ModelVersion:
    def stamp(value):
        # DuckDB gives datetime (or None); a pandas path may give Timestamp or NaT.
        if value is None or type(value).__name__ == "NaTType":
            return None
        return value.to_pydatetime() if hasattr(value, "to_pydatetime") else value

    return ModelVersion(
        name=row["name"], source=row["source"], revision=row["revision"], parent=row["parent"],
        deployed_from=stamp(row["deployed_from"]), deployed_to=stamp(row["deployed_to"]),
        fingerprint=row["fingerprint"], notes=row["notes"],
        allow_pickle=bool(row["allow_pickle"]), created_at=stamp(row["created_at"]),
        updated_at=stamp(row["updated_at"]))


def _normalise_source(source: str | os.PathLike) -> str:
    text = os.fspath(source).strip()
    if not text:
        raise ModelRegistryError("source: expected a local model folder or a hub id, got ''")
    if is_local_source(text):
        path = Path(text).expanduser()
        if not path.is_dir():
            raise ModelLoadError(f"model source {path} does not exist or is not a folder")
        return str(path.resolve())
    return text


def _check_weights_policy(source: str, allow_pickle: bool) -> None:
    """Refuse, at registration already, a local checkpoint that only pickle weights could load."""
    names = [p.name for p in fingerprint_files(source)]
    has_safetensors = any(n.endswith(".safetensors") for n in names)
    if not has_safetensors and any(n.endswith(".bin") for n in names) and not allow_pickle:
        raise ModelLoadError(
            f"model source {source} has only pickle weights ({', '.join(n for n in names if n.endswith('.bin'))}) "
            f"and no *.safetensors; unpickling can run arbitrary code, so pass --allow-pickle "
            f"(allow_pickle=True) only if you trust these files")


def _check_lineage(store: Store, name: str, parent: str | None) -> None:
    if parent is None:
        return
    if parent == name:
        raise ModelRegistryError(f"model version '{name}' cannot be its own parent")
    seen = {name}
    current: str | None = parent
    while current is not None:
        row = rows.model_version_row(store, current)
        if row is None:
            raise UnknownNameError("parent model version", current,
                                   rows.model_version_names(store))
        if current in seen:
            raise ModelRegistryError(
                f"parent '{parent}' of model version '{name}' would make a cycle through "
                f"'{current}'")
        seen.add(current)
        current = row["parent"]


def register_version(store: Store, name: str, source: str | os.PathLike, *,
                     revision: str | None = None, parent: str | None = None,
                     deployed_from: datetime | str | None = None,
                     deployed_to: datetime | str | None = None, notes: str | None = None,
                     allow_pickle: bool | None = None, force: bool = False) -> ModelVersion:
    """Register (or re-register) a model version and fingerprint its files.

    Parameters
    ----------
    store : Store
        A store opened for writing.
    name : str
        The version name: letters, digits and ``. _ - : +``, starting with a letter or digit.
    source : str or path-like
        A local model folder (stored as an absolute path) or a hub id.
    revision : str, optional
        Hub revision for hub ids.
    parent : str, optional
        An already registered version this one derives from.
    deployed_from, deployed_to : datetime or ISO-8601 str, optional
        The production window; aware values are converted to UTC, naive ones are taken as UTC.
    notes : str, optional
        Free text.
    allow_pickle : bool, optional
        Opt in to loading ``*.bin`` (pickle) weights for this version; None keeps the recorded
        choice (False for a new version).
    force : bool
        Replace a registration whose source, revision or fingerprint differs.

    Returns
    -------
    ModelVersion
        The record as stored.

    Raises
    ------
    ModelLoadError
        A local source is missing, holds no model, or has only pickle weights without opt-in.
    VersionConflictError
        ``name`` is registered with another source, revision or fingerprint and ``force`` is off.
    UnknownNameError
        ``parent`` is not registered (the message lists the registered versions).
    ModelRegistryError
        A bad name, date, window or a parent cycle.

    Notes
    -----
    Re-registering a name with the same source, revision and fingerprint changes nothing, except
    that metadata passed explicitly (parent, deployment window, notes, allow_pickle) replaces what
    was recorded: it describes the same weights, so no ``force`` is needed for it. Metadata left
    out (``None``) keeps its recorded value, with or without ``force``.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise ModelRegistryError(
            f"model version name {name!r}: expected letters, digits and . _ - : + "
            f"starting with a letter or digit")
    source_text = _normalise_source(source)
    local = is_local_source(source_text)
    existing = rows.model_version_row(store, name)
    if allow_pickle is None:  # not given: keep what was recorded (False for a new version)
        allow_pickle = bool(existing["allow_pickle"]) if existing is not None else False
    if local:
        _check_weights_policy(source_text, allow_pickle)
    fingerprint = compute_fingerprint(source_text) if local else None
    start = _as_utc(deployed_from, "deployed_from")
    end = _as_utc(deployed_to, "deployed_to")

    if existing is not None:
        recorded = {k: existing[k] for k in ("source", "revision", "fingerprint")}
        same_place = (existing["source"], existing["revision"]) == (source_text, revision)
        # A hub id has no fingerprint until loaded: keep the one loading recorded, if any.
        hub_fingerprint = existing["fingerprint"] if same_place else None
        requested = {"source": source_text, "revision": revision,
                     "fingerprint": fingerprint if local else hub_fingerprint}
        same_model = recorded == requested
        if not same_model and not force:
            raise VersionConflictError(name, recorded, requested)
        # Keep recorded metadata unless the caller gave a new value.
        parent = parent if parent is not None else existing["parent"]
        start = start if start is not None else existing["deployed_from"]
        end = end if end is not None else existing["deployed_to"]
        notes = notes if notes is not None else existing["notes"]
        fingerprint = requested["fingerprint"]

    if start is not None and end is not None and end < start:
        raise ModelRegistryError(
            f"model version '{name}': deployed_to {end.isoformat()} is before deployed_from "
            f"{start.isoformat()}")
    _check_lineage(store, name, parent)

    wanted = {"source": source_text, "revision": revision, "parent": parent,
              "deployed_from": start, "deployed_to": end, "fingerprint": fingerprint,
              "notes": notes, "allow_pickle": bool(allow_pickle)}
    if existing is None or any(existing[k] != v for k, v in wanted.items()):
        # Spelled out rather than ``**wanted`` so each field's type is checked against the writer.
        rows.upsert_model_version(store, name, source=source_text, revision=revision,
                                  parent=parent, deployed_from=start, deployed_to=end,
                                  fingerprint=fingerprint, notes=notes,
                                  allow_pickle=bool(allow_pickle))
    return get_version(store, name)


def get_version(store: Store, name: str) -> ModelVersion:
    """The registered version ``name``.

    Raises
    ------
    UnknownNameError
        ``name`` is not registered; the message lists the registered versions.
    """
    row = rows.model_version_row(store, name)
    if row is None:
        raise UnknownNameError("model version", name, rows.model_version_names(store))
    return _from_row(row)


def list_versions(store: Store):
    """Every registered version as a pandas DataFrame, oldest registration first.

    Columns: ``name, source, revision, parent, deployed_from, deployed_to, fingerprint, notes,
    allow_pickle, created_at, updated_at`` (timestamps naive UTC).
    """
    return rows.model_versions_frame(store)
