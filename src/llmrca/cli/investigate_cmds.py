"""``llmrca investigate``: the incident's root cause, tested -- replay on the deployed and the
previous version, automatic segmentation and attribution, training-data search, guardrail rules,
each hypothesis with a verdict, and the proposed root cause in plain words."""

from __future__ import annotations

import math

from llmrca.cli.common import print_table, store_from


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "investigate", help="test the root-cause hypotheses of an incident",
        description="Replay the offending interactions on the deployed and the previous "
                    "version, attribute them to automatic prompt segments, search the "
                    "training data, replay the guardrail rules, and test every registered "
                    "hypothesis (Holm across them); prints the verdict table and the proposed "
                    "root cause, and stores everything (a warm re-run loads no model).")
    p.add_argument("incident", help="incident id")
    p.add_argument("--versions", metavar="DEPLOYED[,PREVIOUS]",
                   help="the deployed and the previous version (default: the incident's "
                        "deployed version and its previous one)")
    p.add_argument("--samples", type=int, default=20, help="samples per prompt and variant")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--alpha", type=float, default=0.05,
                   help="family-wise level of Holm's correction (default 0.05)")
    p.add_argument("--judge", action="append", default=None, metavar="JUDGE",
                   help="judge of the replays (repeatable; default: same-as-incident and "
                        "refusal -- the failure is the model doing again what it did in the "
                        "incident)")
    p.add_argument("--hypotheses", metavar="FILE",
                   help="a hypotheses.yaml (or an incident bundle folder holding one)")
    p.add_argument("--kind", action="append", default=None, metavar="KIND",
                   help="test only these registered kinds (repeatable)")
    p.set_defaults(func=cmd_investigate)


def cmd_investigate(args) -> int:
    from llmrca.errors import InvalidArgumentError
    from llmrca.hypotheses import investigate

    deployed = previous = None
    if args.versions:
        parts = [v.strip() for v in args.versions.split(",")]
        if not 1 <= len(parts) <= 2 or not all(parts):
            raise InvalidArgumentError(f"--versions takes DEPLOYED or DEPLOYED,PREVIOUS; got "
                                       f"{args.versions!r}")
        deployed = parts[0]
        previous = parts[1] if len(parts) == 2 else None
    with store_from(args) as store:
        report = investigate(store, args.incident, args.kind, deployed=deployed,
                             previous=previous, samples=args.samples, seed=args.seed,
                             alpha=args.alpha, judges=args.judge, bundle=args.hypotheses)
        frame = report.to_frame()
        shown = frame[["rank", "name", "verdict", "effect", "effect_low", "effect_high",
                       "p_value", "adjusted_p", "min_effect"]].copy()
        for column in ("effect", "effect_low", "effect_high"):
            shown[column] = shown[column].round(3)
        for column in ("p_value", "adjusted_p"):
            shown[column] = shown[column].map(lambda p: "n/a" if math.isnan(p) else f"{p:.2g}")
        print(f"hypothesis run {report.run_id} on {args.incident} "
              f"({'read back from the store' if report.info.get('loaded') else 'computed'})")
        print_table(shown)
        for r in report.results:
            print(f"  {r.name} [{r.verdict}]: {r.summary}")
        print(report.conclusion())
    return 0
