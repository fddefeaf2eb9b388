"""``llmrca models add | list | show``: the model registry from the command line."""

from __future__ import annotations

import sys

from llmrca.cli.common import print_table, store_from


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("models", help="register and inspect model versions")
    actions = parser.add_subparsers(dest="models_action", metavar="ACTION", required=True)

    add = actions.add_parser(
        "add", help="register a model version (a local folder or a hub id)",
        description="Register a model version and fingerprint its files. Re-adding the same "
                    "source is a no-op; a different source or changed files need --force.")
    add.add_argument("name", help="version name, e.g. assistant-v2")
    add.add_argument("--source", required=True, help="local model folder or hub id")
    add.add_argument("--revision", help="hub revision (branch, tag or commit)")
    add.add_argument("--parent", help="the registered version this one derives from")
    add.add_argument("--deployed-from", help="start of the production window (ISO-8601)")
    add.add_argument("--deployed-to", help="end of the production window (ISO-8601)")
    add.add_argument("--notes", help="free text")
    add.add_argument("--allow-pickle", action="store_true",
                     help="allow *.bin (pickle) weights; only for files you trust")
    add.add_argument("--force", action="store_true",
                     help="replace a registration with another source, revision or files")
    add.set_defaults(func=cmd_add)

    listing = actions.add_parser("list", help="list the registered versions")
    listing.set_defaults(func=cmd_list)

    show = actions.add_parser(
        "show", help="one version, and whether its files still match the fingerprint",
        description="Print a version's record and check its files against the fingerprint. "
                    "Exit code 1 when a local version's files are missing or changed.")
    show.add_argument("name")
    show.set_defaults(func=cmd_show)


def cmd_add(args) -> int:
    from llmrca.models import register_version

    with store_from(args) as store:
        version = register_version(
            store, args.name, args.source, revision=args.revision, parent=args.parent,
            deployed_from=args.deployed_from, deployed_to=args.deployed_to, notes=args.notes,
            allow_pickle=True if args.allow_pickle else None, force=args.force)
    fingerprint = version.fingerprint[:12] if version.fingerprint else "(hub id: set on load)"
    print(f"registered {version.name}: {version.source} fingerprint {fingerprint}")
    return 0


def cmd_list(args) -> int:
    from llmrca.models import list_versions

    with store_from(args, read_only=True) as store:
        frame = list_versions(store)
    if len(frame):
        frame = frame.assign(fingerprint=frame["fingerprint"].map(
            lambda fp: fp[:12] if isinstance(fp, str) else "-"))
        frame = frame[["name", "source", "revision", "parent", "deployed_from", "deployed_to",
                       "fingerprint", "notes"]]
    print_table(frame)
    return 0


def files_status(version) -> tuple[str, bool]:
    """A one-line verdict on a version's files, and whether they are fine."""
    from llmrca.errors import ModelLoadError
    from llmrca.models import compute_fingerprint

    if not version.is_local:
        return ("hub id: checked when loaded" if version.fingerprint is None
                else "hub id: fingerprint recorded at first load"), True
    try:
        actual = compute_fingerprint(version.source)
    except ModelLoadError as exc:
        return f"MISSING ({exc})", False
    assert actual is not None  # None is for hub ids only; this source is local
    if actual == version.fingerprint:
        return "match", True
    return f"CHANGED (now {actual[:12]}, recorded {str(version.fingerprint)[:12]})", False


def cmd_show(args) -> int:
    from llmrca.models import get_version

    with store_from(args, read_only=True) as store:
        version = get_version(store, args.name)
    status, ok = files_status(version)
    fields = [
        ("name", version.name), ("source", version.source), ("revision", version.revision),
        ("parent", version.parent), ("deployed_from", version.deployed_from),
        ("deployed_to", version.deployed_to), ("fingerprint", version.fingerprint),
        ("allow_pickle", version.allow_pickle), ("notes", version.notes),
        ("registered", version.created_at), ("updated", version.updated_at), ("files", status),
    ]
    width = max(len(k) for k, _ in fields)
    for key, value in fields:
        print(f"{key:<{width}}  {'-' if value is None else value}", file=sys.stdout)
    return 0 if ok else 1
