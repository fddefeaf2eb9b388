"""`llmrca zoo build`, `llmrca zoo show` and `llmrca zoo incident`: the model-organism zoo."""

from __future__ import annotations

import sys


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "zoo", help="build, check and register the model-organism zoo",
        description="Tiny GPT-2 chat models with planted root causes, built offline and cached "
                    "by spec hash.")
    sub = parser.add_subparsers(dest="zoo_command", metavar="ZOO_COMMAND")

    build = sub.add_parser("build", help="build (or reuse) the zoo, check it, register it",
                           description="Build the zoo (or reuse the cached build of the same "
                                       "spec), print the behaviour table, and register every "
                                       "version and its training data in the store.")
    build.add_argument("--spec", metavar="FILE",
                       help="zoo spec (YAML or JSON); fields it omits keep the built-in values")
    build.add_argument("--test", action="store_true",
                       help="start from the small test spec instead of the default one")
    build.add_argument("--force", action="store_true", help="rebuild even if cached")
    build.add_argument("--no-check", action="store_true",
                       help="skip the behaviour check (a later build with the check runs it)")
    build.add_argument("--cache-dir", metavar="DIR",
                       help="cache root (default: $LLMRCA_CACHE or ./.llmrca/cache)")
    build.set_defaults(func=cmd_build)

    show = sub.add_parser("show", help="spec hashes and the zoos in the cache")
    show.add_argument("--cache-dir", metavar="DIR",
                      help="cache root (default: $LLMRCA_CACHE or ./.llmrca/cache)")
    show.set_defaults(func=cmd_show)

    incident = sub.add_parser(
        "incident", help="write an incident bundle sampled from a zoo's failing version",
        description="Build (or reuse) the zoo of a spec with a plant and write an incident "
                    "bundle (incident.yaml + interactions.jsonl): offending interactions "
                    "sampled from the failing version on the plant's triggered requests, "
                    "context interactions from ordinary traffic.")
    incident.add_argument("out", metavar="FOLDER", help="the bundle folder to write")
    incident.add_argument("--spec", metavar="FILE", required=True,
                          help="zoo spec (YAML or JSON) with at least one plant")
    incident.add_argument("--test", action="store_true",
                          help="start from the small test spec instead of the default one")
    incident.add_argument("--id", default="INC-P001", help="incident id (default INC-P001)")
    incident.add_argument("--version", help="the failing version (default: the last version "
                                            "with a plant or a system-prompt change)")
    incident.add_argument("--offending", type=int, default=6,
                          help="offending interactions (default 6)")
    incident.add_argument("--context", type=int, default=12,
                          help="context interactions (default 12)")
    incident.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    incident.add_argument("--cache-dir", metavar="DIR",
                          help="cache root (default: $LLMRCA_CACHE or ./.llmrca/cache)")
    incident.set_defaults(func=cmd_incident)

    def _usage(args) -> int:
        parser.print_help()
        return 2

    parser.set_defaults(func=_usage)


def _spec_from(args):
    from llmrca.zoo.spec import DEFAULT_SPEC, TEST_SPEC, ZooSpec

    base = TEST_SPEC if args.test else DEFAULT_SPEC
    return ZooSpec.from_file(args.spec, base=base) if args.spec else base


def cmd_build(args) -> int:
    from llmrca.cli.common import print_table, store_from
    from llmrca.zoo.behaviour import BehaviourReport
    from llmrca.zoo.build import ZooBehaviourError, build_zoo, register_zoo, zoo_root

    spec = _spec_from(args)
    print(f"zoo '{spec.name}' (spec {spec.spec_hash()}) at {zoo_root(spec, args.cache_dir)}",
          file=sys.stderr)
    try:
        build = build_zoo(spec, cache_dir=args.cache_dir, force=args.force,
                          check=not args.no_check, progress=sys.stderr.isatty())
    except ZooBehaviourError as exc:
        print(BehaviourReport(None, exc.table).to_text())
        raise
    if build.behaviour_table is not None:
        print(BehaviourReport(build.behaviour_counts, build.behaviour_table).to_text())
    else:
        print("(behaviour check skipped)")
    how = "reused the cached build (built" if build.reused else "built (wall"
    print(f"\n{how} {build.build_seconds:.1f} s): {build.root}")
    import pandas as pd

    print_table(pd.DataFrame([
        {"version": v, "parent": build.parents[v] or "",
         "weights_sha256": build.weights_sha256[v][:16], "folder": str(build.models[v])}
        for v in build.versions]))
    with store_from(args) as store:
        ingested = register_zoo(store, build)
    print("registered " + ", ".join(f"{v} ({n} training examples)" for v, n in ingested.items()))
    return 0


def cmd_incident(args) -> int:
    from llmrca.zoo.build import build_zoo
    from llmrca.zoo.incidents import failing_version, planted_cause, write_planted_incident

    spec = _spec_from(args)
    # A spec (or version) with nothing planted fails here, before any training.
    planted_cause(spec, args.version or failing_version(spec))
    build = build_zoo(spec, cache_dir=args.cache_dir, progress=sys.stderr.isatty())
    made = write_planted_incident(build, args.out, incident_id=args.id, version=args.version,
                                  n_offending=args.offending, n_context=args.context,
                                  seed=args.seed)
    print(f"{made.incident_id}: {len(made.offending)} offending and {len(made.context)} context "
          f"interactions of {made.version} (previous {made.previous_version or '-'}) in "
          f"{made.folder}")
    print(f"ingest it with `llmrca ingest {made.folder}`")
    return 0


def cmd_show(args) -> int:
    import pandas as pd

    from llmrca.cli.common import print_table
    from llmrca.zoo.build import cached_zoos, zoo_root
    from llmrca.zoo.spec import DEFAULT_SPEC, TEST_SPEC

    print("built-in specs:")
    print_table(pd.DataFrame([
        {"spec": s.name, "hash": s.spec_hash(), "built": (zoo_root(s, args.cache_dir)
                                                          / "zoo.json").exists(),
         "folder": str(zoo_root(s, args.cache_dir))} for s in (DEFAULT_SPEC, TEST_SPEC)]))
    zoos = cached_zoos(args.cache_dir)
    print("\ncached zoos:")
    print_table(pd.DataFrame([
        {"hash": z["spec_hash"], "spec": z.get("spec_name", ""),
         "versions": ", ".join(z["versions"]), "built_at": z.get("built_at", ""),
         "build_s": z.get("build_seconds"),
         "check": ("passed" if z.get("passed") else "FAILED") if z.get("checked") else "not run",
         "root": z["root"]} for z in zoos]))
    return 0


__all__ = ["add_parser", "cmd_build", "cmd_incident", "cmd_show"]
