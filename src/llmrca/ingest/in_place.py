"""Logs queried where they live: ``llmrca ingest --in-place PATH_OR_GLOB``.

Production logs in Parquet (a file, a folder, a glob, or a URL the user's DuckDB reads, such as
``s3://bucket/logs/*.parquet`` with httpfs loaded) are scanned with the checks a copying ingest
makes and registered in the store, which reads them through DuckDB views from then on
(:mod:`llmrca.store.log_sources`). Nothing is copied into the store's tables.
"""

from __future__ import annotations

from dataclasses import dataclass

from llmrca.errors import InvalidArgumentError, NotFoundError
from llmrca.store import ingest_writes as writes
from llmrca.store.core import Store
from llmrca.store.log_sources import LogScan, register_log_source, scan_parquet_logs

__all__ = ["InPlaceReport", "ingest_in_place"]


@dataclass(frozen=True)
class InPlaceReport:
    """The scan of logs in place and, unless only scanned, the id they were registered under."""

    scan: LogScan
    source_id: str | None

    def summary(self) -> str:
        """The scan's lines and what became of it."""
        status = (f"registered as {self.source_id[:12]}: queried in place through the view "
                  "all_log_events" if self.source_id else "scanned only: nothing registered")
        return f"{self.scan.summary()}\n{status}"


def ingest_in_place(store: Store, location: str, *, incident_id: str, kind: str = "logs",
                    skip_invalid: bool = False, scan_only: bool = False) -> InPlaceReport:
    """Scan Parquet logs where they are and register them for an incident.

    Parameters
    ----------
    location : str
        A Parquet file, a folder (every ``*.parquet`` under it), a glob, or a URL.
    incident_id : str
        An incident already in the store; its ``personal_fields`` are hashed in the views.
    kind : {"logs", "guardrail"}
    skip_invalid : bool
        Register even when rows fail the checks; the views leave those rows out. Without it,
        the first bad row is raised (file, row, field) and nothing is registered.
    scan_only : bool
        Report the scan and register nothing.
    """
    if kind not in ("logs", "guardrail"):
        raise InvalidArgumentError(f"logs in place are of kind logs or guardrail; got {kind!r}")
    personal = writes.incident_personal_fields(store, incident_id)
    if personal is None:
        raise NotFoundError(
            f"incident '{incident_id}' is not in the store; create it with `llmrca incidents "
            f"create {incident_id} --title ... --category ...` (or ingest its bundle) first")
    scan = scan_parquet_logs(store, location, incident_id=incident_id, stream=kind,
                             personal_fields=personal)
    if scan_only:
        return InPlaceReport(scan, None)
    return InPlaceReport(scan, register_log_source(store, scan, skip_invalid=skip_invalid))
