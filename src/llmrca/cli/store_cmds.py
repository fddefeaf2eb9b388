"""`llmrca init` and `llmrca incidents list|show|create|focus`."""

from __future__ import annotations

from llmrca.cli.common import print_table, store_from


def add_parser(subparsers) -> None:
    init = subparsers.add_parser("init", help="create the store, or upgrade an old one in place")
    init.add_argument("--adopt", action="store_true",
                      help="add llmrca's tables to an existing DuckDB file of other tables")
    init.set_defaults(func=cmd_init)

    incidents = subparsers.add_parser("incidents", help="list and show incidents")
    sub = incidents.add_subparsers(dest="incidents_command", metavar="SUBCOMMAND")
    listing = sub.add_parser("list", help="one line per incident, with counts")
    listing.set_defaults(func=cmd_list)
    show = sub.add_parser("show", help="an incident's record, counts per model version, window")
    show.add_argument("incident_id", metavar="ID")
    show.set_defaults(func=cmd_show)

    from llmrca.ingest.documents import CATEGORIES, DETECTION_SOURCES, SEVERITIES, STATUSES

    create = sub.add_parser(
        "create", help="create an incident record, to ingest single export files into",
        description="Create an incident without a bundle, then `llmrca ingest FILE --incident ID`.")
    create.add_argument("incident_id", metavar="ID")
    create.add_argument("--title", required=True)
    create.add_argument("--category", required=True, choices=CATEGORIES)
    create.add_argument("--severity", default="medium", choices=SEVERITIES)
    create.add_argument("--status", default="open", choices=STATUSES)
    create.add_argument("--detection-source", choices=DETECTION_SOURCES)
    create.add_argument("--detected-at", help="ISO-8601 time (default: now, UTC)")
    create.add_argument("--summary")
    create.add_argument("--deployed-model-version")
    create.add_argument("--personal-field", action="append", default=[], dest="personal_fields",
                        help="a log field to store only as a salted hash (repeatable)")
    create.set_defaults(func=cmd_create)

    focus = sub.add_parser(
        "focus", help="say which interactions are the incident (offending); the rest is context",
        description="Mark the interactions that match ALL the given filters offending and the "
                    "others context (or, with --add, add the matches). The selection is stored: "
                    "interactions ingested later get their role from it. Replay, attribution and "
                    "hypotheses use the offending set by default.")
    focus.add_argument("incident_id", metavar="ID")
    add_selection_arguments(focus)
    focus.add_argument("--all", action="store_true", help="every interaction is offending")
    focus.add_argument("--judge", help="also require this judge's label on the logged output "
                                       "(e.g. refusal, rules:jailbreak)")
    focus.add_argument("--label", help="the label --judge must give (unsafe, refusal, safe)")
    focus.add_argument("--add", action="store_true", help="add to the offending set")
    focus.add_argument("--dry-run", action="store_true", help="count, change nothing")
    focus.set_defaults(func=cmd_focus)

    from llmrca.verify import DEFAULT_MAX_RATE

    promote = sub.add_parser(
        "promote", help="make an incident a release gate (`llmrca verify --suite` replays it)",
        description="Add an incident to the regression suite with the reproduction-rate "
                    "threshold a candidate's bound must stay under; run again to change it.")
    promote.add_argument("incident_id", metavar="ID")
    promote.add_argument("--max-rate", type=float, default=DEFAULT_MAX_RATE,
                         help=f"threshold (default {DEFAULT_MAX_RATE})")
    promote.add_argument("--note", help="why it is a gate")
    promote.set_defaults(func=lambda args: _verify_cmds().cmd_promote(args))
    demote = sub.add_parser("demote", help="take an incident out of the regression suite")
    demote.add_argument("incident_id", metavar="ID")
    demote.set_defaults(func=lambda args: _verify_cmds().cmd_demote(args))
    incidents.set_defaults(func=lambda args: incidents.print_help() or 2)


def cmd_init(args) -> int:
    import duckdb

    from llmrca.errors import StoreError
    from llmrca.store import open_store

    with open_store(args.db, adopt=args.adopt) as store:
        # Every count is read before anything is printed: a store that fails half-way prints
        # no table that looks healthy.
        try:
            version, counts = store.schema_version, store.table_counts()
        except duckdb.Error as exc:
            raise StoreError(f"store {store.path} is damaged or truncated "
                             f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
                             ) from None
    print(f"store {store.path} at schema version {version}")
    for table, rows in counts.items():
        print(f"  {table:<20} {rows:>10} rows")
    return 0


def cmd_list(args) -> int:
    from llmrca.store.queries import list_incidents

    with store_from(args, read_only=True) as store:
        print_table(list_incidents(store))
    return 0


def cmd_show(args) -> int:
    from llmrca.store.log_sources import list_log_sources
    from llmrca.store.queries import incident_summary

    with store_from(args, read_only=True) as store:
        summary = incident_summary(store, args.incident_id)
        in_place = list_log_sources(store, args.incident_id)
    record = summary.record
    print(f"{record['incident_id']}: {record['title']}")
    for key in ("category", "severity", "status", "detected_at", "detection_source",
                "deployed_model_version", "revision", "updated_at"):
        print(f"  {key:<24} {record.get(key)}")
    if record.get("summary"):
        print(f"  {'summary':<24} {record['summary']}")
    window = summary.window
    print(f"\ntime window: {window['first']} .. {window['last']}  "
          f"({window['sessions']} sessions, {window['users']} users, hashed)")
    print("\nper model version:")
    print_table(summary.per_version)
    if len(summary.guardrail):
        print("\nguardrail decisions:")
        print_table(summary.guardrail)
    if len(summary.history):
        print(f"\nrecord history: {len(summary.history)} earlier revision(s)")
    if summary.rejects:
        print(f"\nrejected rows kept in ingest_rejects: {summary.rejects}")
    if len(in_place):
        print("\nlogs queried in place (counted above; `llmrca ingest --in-place` again to "
              "refresh):")
        print_table(in_place[["stream", "location", "files", "rows", "rejected",
                              "registered_at"]])
    return 0


def add_selection_arguments(parser) -> None:
    """The filters of a selection (shared by `incidents focus` and `interactions list`)."""
    parser.add_argument("--ids", nargs="+", metavar="ID",
                        help="interaction ids, provider response ids or TRACE:SPAN")
    parser.add_argument("--guardrail", nargs="+", metavar="DECISION",
                        help="guardrail decisions (block, flag, redact, allow)")
    parser.add_argument("--model-version", nargs="+", metavar="VERSION")
    parser.add_argument("--conversation", nargs="+", metavar="ID",
                        help="conversation/session ids as written in the source")
    parser.add_argument("--text", nargs="+", metavar="TEXT",
                        help="text in the conversation or output (case-insensitive)")
    parser.add_argument("--flagged", action="store_true",
                        help="calls a source flagged (guardrail, content filter, detector hit)")
    parser.add_argument("--where", help="SQL boolean expression over the interactions columns")


def selection_from(args) -> dict:
    """The selection the filter arguments describe (empty when none was given)."""
    selection: dict = {}
    for key in ("ids", "guardrail", "model_version", "conversation", "text", "where"):
        if getattr(args, key, None):
            selection[key] = getattr(args, key)
    if getattr(args, "flagged", False):
        selection["flagged"] = True
    return selection


def cmd_create(args) -> int:
    from llmrca.incidents import create_incident

    detected = None
    if args.detected_at:
        from datetime import datetime

        from llmrca.errors import InvalidArgumentError

        try:
            detected = datetime.fromisoformat(args.detected_at.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidArgumentError(f"--detected-at {args.detected_at!r}: an ISO-8601 time") \
                from None
    with store_from(args) as store:
        create_incident(store, args.incident_id, title=args.title, category=args.category,
                        severity=args.severity, status=args.status,
                        detection_source=args.detection_source, detected_at=detected,
                        summary=args.summary,
                        deployed_model_version=args.deployed_model_version,
                        personal_fields=args.personal_fields)
    print(f"incident {args.incident_id} created; add files with "
          f"`llmrca ingest FILE --incident {args.incident_id}`")
    return 0


def cmd_focus(args) -> int:
    from llmrca.errors import InvalidArgumentError
    from llmrca.incidents import focus

    selection = selection_from(args)
    if args.all:
        if selection:
            raise InvalidArgumentError("--all takes no other filter")
        selection = {"all": True}
    if not selection and not args.judge:
        raise InvalidArgumentError("give --all or at least one filter (--ids, --guardrail, "
                                   "--model-version, --conversation, --text, --flagged, --where, "
                                   "--judge/--label)")
    with store_from(args, read_only=args.dry_run) as store:
        result = focus(store, args.incident_id, selection, add=args.add, judge=args.judge,
                       label=args.label, dry_run=args.dry_run)
    verb = "would mark" if args.dry_run else "marked"
    print(f"{args.incident_id}: {verb} {len(result.matched)} interaction(s) offending")
    if result.applied:
        print(f"  now {result.roles['offending']} offending, {result.roles['context']} context")
    return 0


def _verify_cmds():
    from llmrca.cli import verify_cmds

    return verify_cmds
