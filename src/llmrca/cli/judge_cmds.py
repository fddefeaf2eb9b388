"""``llmrca judges list | validate``: the judges, and a judge checked against human labels."""

from __future__ import annotations

from llmrca.cli.common import print_table, store_from


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("judges", help="list judges; validate one against human labels")
    actions = parser.add_subparsers(dest="judges_action", metavar="ACTION", required=True)

    listing = actions.add_parser("list", help="the judges --judge accepts, one line each")
    listing.set_defaults(func=cmd_list)

    validate = actions.add_parser(
        "validate", help="sensitivity and specificity of a judge against human labels",
        description="Run a judge on human-labelled outputs of an incident and report its "
                    "sensitivity and specificity with Wilson intervals. The incident's logged "
                    "offending outputs count as 'unsafe' labels unless --no-offending. The "
                    "counts are stored, so rates judged later can be corrected for the judge's "
                    "error.")
    validate.add_argument("incident", help="incident id")
    validate.add_argument("--judge", required=True,
                          help="judge spec (see `llmrca judges list`), e.g. compliance")
    validate.add_argument("--labels", required=True,
                          help="CSV (header: output,label or interaction_id,label; optional "
                               "prompt) or JSONL of the same fields; label: unsafe | safe | "
                               "refusal (or 1/0)")
    validate.add_argument("--no-offending", action="store_true",
                          help="do not count the logged offending outputs as unsafe labels")
    validate.add_argument("--confidence", type=float, default=0.95,
                          help="level of the intervals (default 0.95)")
    validate.add_argument("--no-save", action="store_true", help="do not store the validation")
    validate.add_argument("--show-disagreements", action="store_true",
                          help="print the samples where the judge and the labels disagree")
    validate.set_defaults(func=cmd_validate)


def _describe(spec: str) -> str:
    """The first line of a judge's docstring (a rule set's description for rules:NAME)."""
    from llmrca.judges import JUDGES
    from llmrca.judges.rules import load_rules, shipped_rule_sets

    kind, _, argument = spec.partition(":")
    if kind == "rules" and argument in shipped_rule_sets():
        rules = load_rules(shipped_rule_sets()[argument])
        return " ".join((rules.description or "shipped rule set").split())
    doc = (JUDGES.get(kind).__doc__ or "").strip().splitlines()
    return doc[0] if doc else ""


def cmd_list(args) -> int:
    import pandas as pd

    from llmrca.judges import DEFAULT_JUDGES, available_judges

    defaults: dict[str, list[str]] = {}
    for category, specs in DEFAULT_JUDGES.items():
        for spec in specs:
            defaults.setdefault(spec, []).append(category)
    rows = [{"judge": spec, "default for": ", ".join(defaults.get(spec, [])) or "-",
             "what it does": _describe(spec)} for spec in available_judges()]
    print_table(pd.DataFrame(rows), max_colwidth=100)
    return 0


def cmd_validate(args) -> int:
    from llmrca.errors import InvalidArgumentError
    from llmrca.judges import validate_judge

    if not 0.0 < args.confidence < 1.0:
        raise InvalidArgumentError(f"--confidence must be in (0, 1); got {args.confidence}")
    with store_from(args, read_only=args.no_save) as store:
        result = validate_judge(store, args.incident, args.judge, args.labels,
                                offending_as_positive=not args.no_offending,
                                confidence=args.confidence, save=not args.no_save)
    labelled = result.n - result.n_offending
    print(f"judge {result.judge} (config {result.judge_config_hash}) on {result.incident_id}: "
          f"{labelled} labelled sample(s) + {result.n_offending} offending output(s)")
    print(f"  TP {result.true_positives}  FN {result.false_negatives}  "
          f"TN {result.true_negatives}  FP {result.false_positives}")
    for line in result.summary().splitlines():
        print("  " + line)
    if result.validation_id:
        print(f"stored as validation {result.validation_id[:12]}")
    if args.show_disagreements:
        wrong = result.samples[~result.samples["agree"]]
        print_table(wrong[["sample_id", "source", "human", "judged", "output"]])
    return 0
