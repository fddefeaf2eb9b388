"""Ingestion: readers per input format -> validated records -> the store.

Formats register themselves in :data:`FORMATS`; importing this package registers the built-in ones
(``llmrca``, ``openai-chat``, ``otel-genai``, ``garak``).
"""

import llmrca.ingest.adapters  # noqa: F401  (the external formats register on import)
from llmrca.ingest.bundle import (
    IngestReport,
    find_bundle_files,
    ingest_bundle,
    ingest_file,
    ingest_training_file,
)
from llmrca.ingest.formats import FORMATS, InteractionFormat, read_interactions, register_format
from llmrca.ingest.in_place import InPlaceReport, ingest_in_place
from llmrca.ingest.records import InteractionRecord

__all__ = [
    "FORMATS",
    "InPlaceReport",
    "IngestReport",
    "InteractionFormat",
    "InteractionRecord",
    "find_bundle_files",
    "ingest_bundle",
    "ingest_file",
    "ingest_in_place",
    "ingest_training_file",
    "read_interactions",
    "register_format",
]
