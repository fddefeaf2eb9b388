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
    parser.add_argument("path", nargs="?",
                        help="bundle folder, or a single file with --incident")
    parser.add_argument("--in-place", metavar="PATH_OR_GLOB",
                        help="register Parquet logs where they are (a file, a folder, a glob, or "
                             "a URL your DuckDB reads, e.g. s3://... with httpfs) for "
                             "--incident, after a scan with the ingest's checks; they are "
                             "queried through views, never copied (--kind logs or guardrail)")
    parser.add_argument("--scan-only", action="store_true",
                        help="with --in-place: report the scan, register nothing")
    parser.add_argument("--format", dest="format_name", choices=FORMATS.available(),
                        help="format of the interactions (default: detected)")
    parser.add_argument("--skip-invalid", action="store_true",
                        help="write the good rows; keep bad ones with reasons in ingest_rejects")
    parser.add_argument("--incident", help="incident id, when PATH is a single file")
    parser.add_argument("--kind", default="interactions",
                        choices=["interactions", "logs", "guardrail", "training"],
                        help="what a single file holds (default: interactions)")
    parser.add_argument("--model-version", help="model version of a training-data file")
    parser.set_defaults(func=cmd_ingest, ingest_parser=parser)


def cmd_ingest(args) -> int:
    from llmrca.errors import InvalidArgumentError
    from llmrca.ingest import ingest_bundle, ingest_file

    if args.in_place is not None:
        if args.path is not None:
            raise InvalidArgumentError("give either PATH or --in-place PATH_OR_GLOB, not both")
        return _ingest_in_place(args)
    if args.path is None:  # bad usage, as when PATH was a required argument
        args.ingest_parser.error("the following arguments are required: path (or --in-place "
                                 "PATH_OR_GLOB)")
    if args.scan_only:
        raise InvalidArgumentError("--scan-only goes with --in-place")
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


def _ingest_in_place(args) -> int:
    from llmrca.errors import InvalidArgumentError
    from llmrca.ingest import ingest_in_place

    if not args.incident:
        raise InvalidArgumentError("logs in place belong to an incident: give --incident ID")
    kind = "logs" if args.kind == "interactions" else args.kind
    with store_from(args) as store:
        report = ingest_in_place(store, args.in_place, incident_id=args.incident, kind=kind,
                                 skip_invalid=args.skip_invalid, scan_only=args.scan_only)
    print(report.summary())
    return 0
