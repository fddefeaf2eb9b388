"""`llmrca interactions list|show`: an incident's calls without SQL."""

from __future__ import annotations

import json
import sys

from llmrca.cli.common import print_table, store_from
from llmrca.cli.store_cmds import add_selection_arguments, selection_from


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("interactions", help="list and show an incident's interactions")
    sub = parser.add_subparsers(dest="interactions_command", metavar="SUBCOMMAND")
    listing = sub.add_parser(
        "list", help="one line per interaction (role, time, version, guardrail, last user turn)",
        description="List an incident's interactions, oldest first. Filters as in "
                    "`llmrca incidents focus`; all given filters must hold.")
    listing.add_argument("incident_id", metavar="INCIDENT")
    listing.add_argument("--role", choices=["offending", "context"])
    add_selection_arguments(listing)
    listing.add_argument("--limit", type=int, help="at most this many rows")
    listing.add_argument("--format", dest="output_format", default="table",
                         choices=["table", "json", "csv"])
    listing.set_defaults(func=cmd_list)
    show = sub.add_parser(
        "show", help="one interaction: conversation, output, guardrail, detectors, sources",
        description="Show one interaction. A unique prefix of its id, or the provider's "
                    "response id, is enough.")
    show.add_argument("interaction_id", metavar="ID")
    show.add_argument("--format", dest="output_format", default="text", choices=["text", "json"])
    show.set_defaults(func=cmd_show)
    parser.set_defaults(func=lambda args: parser.print_help() or 2)


def cmd_list(args) -> int:
    from llmrca.incidents import interactions

    with store_from(args, read_only=True) as store:
        frame = interactions(store, args.incident_id, role=args.role,
                             selection=selection_from(args) or None, limit=args.limit)
    if args.output_format == "json":
        print(frame.to_json(orient="records", date_format="iso", force_ascii=False))
    elif args.output_format == "csv":
        frame.to_csv(sys.stdout, index=False)
    else:
        shown = frame.assign(
            interaction_id=frame["interaction_id"].str[:12],
            session_hash=frame["session_hash"].str[:8],
            last_user=frame["last_user"].map(_short), output=frame["output"].map(_short),
            guardrail_decision=frame["guardrail_decision"].fillna(""),
            flags=frame["flags"].fillna("").replace("{}", ""))
        print_table(shown.drop(columns=["response_id"]), max_colwidth=48)
    return 0


def _short(text, width: int = 46):
    if not isinstance(text, str):
        return text
    text = " ".join(text.split())
    return text if len(text) <= width else text[:width - 3] + "..."


def cmd_show(args) -> int:
    from llmrca.incidents import interaction

    with store_from(args, read_only=True) as store:
        row = interaction(store, args.interaction_id)
    if args.output_format == "json":
        print(json.dumps(row, ensure_ascii=False, indent=2, default=str))
        return 0
    print(f"interaction {row['interaction_id']}  ({row['role']}, incident {row['incident_id']})")
    for key in ("ts", "model_version", "response_id", "trace_id", "span_id", "session_hash",
                "user_hash"):
        if row.get(key) is not None:
            print(f"  {key:<14} {row[key]}")
    for source in row.get("sources") or []:
        print(f"  source         {source.get('file')}:{source.get('line')} "
              f"[{source.get('format')}]")
    if row.get("system_prompt"):
        print(f"\n[system] {row['system_prompt']}")
    for message in row.get("messages") or []:
        text = message.get("content")
        if message.get("tool_calls"):
            text = (text + "\n" if text else "") + json.dumps(message["tool_calls"],
                                                             ensure_ascii=False)
        print(f"[{message.get('role')}] {text}")
    print(f"[output] {row.get('output')}")
    if row.get("guardrail"):
        print(f"\nguardrail: {json.dumps(row['guardrail'], ensure_ascii=False)}")
    if row.get("flags"):
        print(f"flags: {json.dumps(row['flags'], ensure_ascii=False)}")
    metadata = row.get("metadata") or {}
    if metadata.get("detector_results"):
        print("red-team detectors: " + json.dumps(metadata["detector_results"]))
    if row.get("tools"):
        print("tools offered: " + ", ".join(
            str((t.get("function") or t).get("name")) for t in row["tools"] if isinstance(t, dict)))
    for item in row.get("context") or []:
        print(f"context: {json.dumps(item, ensure_ascii=False)[:200]}")
    for conflict in row.get("conflicts") or []:
        print(f"conflict: {conflict.get('field')}: stored {conflict.get('stored')!r}, "
              f"{(conflict.get('source') or {}).get('file')} says {conflict.get('other')!r}")
    return 0
