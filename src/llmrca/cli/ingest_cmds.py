"""`llmrca ingest PATH`: a bundle folder, or one file into an existing incident."""

from __future__ import annotations

import sys
from pathlib import Path

from llmrca.cli.common import store_from


def add_parser(subparsers) -> None:
    from llmrca.ingest import FORMATS

    parser = subparsers.add_parser(
        "ingest", help="ingest an incident bundle folder (or one file into an incident)",
        description="Ingest an incident bundle: incident.yaml plus any of interactions.jsonl, "
                    "logs.{jsonl,csv,parquet}, guardrail_logs.{...}, models.yaml, "
                    "training_data/<version>.jsonl. All or nothing unless --skip-invalid.")
    parser.add_argument("path", help="bundle folder, or a single file with --incident")
    parser.add_argument("--format", dest="format_name", choices=FORMATS.available(),
                        help="format of the interactions (default: detected)")
    parser.add_argument("--skip-invalid", action="store_true",
                        help="write the good rows; keep bad ones with reasons in ingest_rejects")
    parser.add_argument("--incident", help="incident id, when PATH is a single file")
    parser.add_argument("--kind", default="interactions",
                        choices=["interactions", "logs", "guardrail", "training"],
                        help="what a single file holds (default: interactions)")
    parser.add_argument("--model-version", help="model version of a training-data file")
    parser.set_defaults(func=cmd_ingest)


def cmd_ingest(args) -> int:
    from llmrca.ingest import ingest_bundle, ingest_file

    path = Path(args.path)
    if not path.exists():
        from llmrca.errors import ValidationError

        raise ValidationError(str(path), None, None, "an existing bundle folder or file")
    with store_from(args) as store:
        if path.is_dir():
            report = ingest_bundle(store, path, format_name=args.format_name,
                                   skip_invalid=args.skip_invalid,
                                   progress=sys.stderr.isatty())
        else:
            report = ingest_file(store, path, incident_id=args.incident, kind=args.kind,
                                 format_name=args.format_name, model_version=args.model_version,
                                 skip_invalid=args.skip_invalid)
    print(report.summary())
    if report.rejected:
        print(f"{report.rejected} invalid row(s) skipped; see table ingest_rejects "
              f"(run {report.run_id[:12]})")
    return 0
