"""``llmrca attribute``: which part of the prompt made the model do it (segment or token
attribution of an incident's offending outputs, optionally against a safe version, with a
faithfulness check by replay)."""

from __future__ import annotations

from llmrca.cli.common import print_table, store_from


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "attribute", help="attribute an incident's offending outputs to prompt segments",
        description="Split each offending prompt into segments (system prompt, earlier turns, "
                    "sentences and clauses of the last user turn), attribute the offending "
                    "output's log-probability (or log p(offending) - log p(refusal)) to them "
                    "with captum, optionally on a safe version side by side, and check "
                    "faithfulness by replaying with the top segment deleted against control "
                    "spans of similar length drawn from low-ranked text. Results are cached "
                    "in the store; --list shows the stored runs.")
    p.add_argument("incident", help="incident id")
    p.add_argument("--version", help="the version to attribute (the failing one)")
    p.add_argument("--list", action="store_true",
                   help="list the incident's stored attribution runs (no model, read-only)")
    p.add_argument("--against", help="a safe version: attributed too, shown side by side; "
                                     "its most common refusal is the contrastive target's")
    p.add_argument("--method", choices=("ablation", "shapley", "ig"), default="ablation")
    p.add_argument("--baseline", choices=("removal", "pad"), default=None,
                   help="segment deleted, or replaced by pad tokens (default removal; ig: pad)")
    p.add_argument("--target", choices=("output", "contrastive"), default="output")
    p.add_argument("--refusal", help="refusal text of the contrastive target")
    p.add_argument("--segment", action="append", default=None, metavar="TEXT",
                   help="an analyst segment (repeatable); replaces the automatic ones")
    p.add_argument("--samples", type=int, default=0,
                   help="samples per variant of the faithfulness replay (0: no check)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--judge", action="append", default=None, metavar="JUDGE")
    p.add_argument("--device")
    p.set_defaults(func=cmd_attribute)


def cmd_list(args) -> int:
    from llmrca.attribution import list_attributions

    with store_from(args, read_only=True) as store:
        runs = list_attributions(store, args.incident)
    if runs.empty:
        print(f"no stored attribution run of {args.incident}; make one with `llmrca attribute "
              f"{args.incident} --version VERSION`")
        return 0
    print(f"{len(runs)} attribution run(s) of {args.incident}, newest first (read one with "
          f"llmrca.attribution.load_attribution(store, RUN_ID))")
    print_table(runs.drop(columns=["incident_id"]).round(3))
    return 0


def cmd_attribute(args) -> int:
    from llmrca.attribution import attribute_incident, attribution_diff
    from llmrca.errors import InvalidArgumentError

    if args.list:
        return cmd_list(args)
    if not args.version:
        raise InvalidArgumentError("attribute: pass --version VERSION (the version to "
                                   "attribute), or --list to list the stored runs")

    baseline = args.baseline or ("pad" if args.method == "ig" else "removal")
    options = {"method": args.method, "baseline": baseline, "target": args.target,
               "refusal": args.refusal, "segments": args.segment or "auto", "seed": args.seed,
               "judges": args.judge, "device": args.device}
    with store_from(args) as store:
        failing = attribute_incident(store, args.incident, args.version, against=args.against,
                                     samples=args.samples, **options)
        print(f"attribution run {failing.run_id} ({failing.method}, baseline {baseline}, "
              f"target {failing.target}) on {failing.model_version}")
        if failing.target == "contrastive":
            print(f"refusal: {failing.info['parameters']['refusal']!r} "
                  f"({failing.info['parameters']['refusal_source']})")
        if args.method == "ig":
            frame = failing.to_frame()
            print_table(frame[["interaction_id", "position", "token", "attribution"]]
                        .assign(interaction_id=lambda f: f["interaction_id"].str[:12]))
        elif args.against:
            safe = attribute_incident(store, args.incident, args.against, **{
                **options, "refusal": failing.info["parameters"]["refusal"]})
            diff = attribution_diff(safe, failing)
            if not diff.empty:
                top = diff.iloc[0]
                print(f"prime suspect: {top['segment']} {str(top['text']).strip()!r} "
                      f"(attribution {top['change']:+.3f} from {args.against} to "
                      f"{args.version})")
            print("segments side by side (first row: the prime suspect)")
            print_table(diff.round(3))
        else:
            summary = failing.summary()
            if not summary.empty:
                print(f"top segment: {summary.iloc[0]['segment']} (mean attribution "
                      f"{summary.iloc[0]['mean']:+.3f})")
            print_table(summary.round(3))
        if failing.faithfulness is not None:
            print(f"faithfulness: {failing.faithfulness}")
    return 0
