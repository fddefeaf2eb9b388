"""`llmrca init` and `llmrca incidents list|show`."""

from __future__ import annotations

from llmrca.cli.common import print_table, store_from


def add_parser(subparsers) -> None:
    init = subparsers.add_parser("init", help="create the store, or upgrade an old one in place")
    init.set_defaults(func=cmd_init)

    incidents = subparsers.add_parser("incidents", help="list and show incidents")
    sub = incidents.add_subparsers(dest="incidents_command", metavar="SUBCOMMAND")
    listing = sub.add_parser("list", help="one line per incident, with counts")
    listing.set_defaults(func=cmd_list)
    show = sub.add_parser("show", help="an incident's record, counts per model version, window")
    show.add_argument("incident_id", metavar="ID")
    show.set_defaults(func=cmd_show)
    incidents.set_defaults(func=lambda args: incidents.print_help() or 2)


def cmd_init(args) -> int:
    with store_from(args) as store:
        print(f"store {store.path} at schema version {store.schema_version}")
        for table, rows in store.table_counts().items():
            print(f"  {table:<20} {rows:>10} rows")
    return 0


def cmd_list(args) -> int:
    from llmrca.store.queries import list_incidents

    with store_from(args, read_only=True) as store:
        print_table(list_incidents(store))
    return 0


def cmd_show(args) -> int:
    from llmrca.store.queries import incident_summary

    with store_from(args, read_only=True) as store:
        summary = incident_summary(store, args.incident_id)
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
    return 0
