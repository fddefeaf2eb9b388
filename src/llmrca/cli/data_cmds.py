"""``llmrca search-training``: rank a version's fine-tuning examples against an incident.

The signals are computed once and stored; asking again prints the stored ranking without loading
the model (``--read-only`` only reads). ``--leave-out K`` fine-tunes the parent again without the
top K (small models only) and replays the incident on both.
"""

from __future__ import annotations

from llmrca.cli.common import print_table, store_from


def add_parser(subparsers) -> None:
    search = subparsers.add_parser(
        "search-training", help="rank a version's training examples by how likely they caused "
                                "an incident",
        description="Training-data search: lexical (BM25), representation (hidden-state cosine) "
                    "and gradient (TracIn) similarity of every training example of VERSION to "
                    "the incident's offending interactions (prompt and logged output), fused by "
                    "reciprocal rank. See docs/data_attribution.md.")
    search.add_argument("incident_id")
    search.add_argument("--version", required=True, help="the model version whose training data "
                                                         "to search")
    search.add_argument("--signals", nargs="+", default=None,
                        help="among lexical, representation, gradient (default: all)")
    search.add_argument("--top", type=int, default=10, help="rows to print (default 10)")
    search.add_argument("--layer", type=int, default=None,
                        help="hidden-state index of the representation signal (default: middle)")
    search.add_argument("--seed", type=int, default=0)
    search.add_argument("--leave-out", type=int, default=None, metavar="K",
                        help="fine-tune the parent again without the top K and replay")
    search.add_argument("--samples", type=int, default=8,
                        help="replay samples per interaction for --leave-out (default 8)")
    search.add_argument("--figure", default=None, metavar="PNG",
                        help="write the top examples per signal to this PNG")
    search.add_argument("--read-only", action="store_true", help="only read stored results")
    search.set_defaults(func=cmd_search)


def cmd_search(args) -> int:
    from llmrca.data_attribution import SIGNALS, leave_k_out, search_training_data
    from llmrca.errors import InvalidArgumentError

    if args.top < 1:
        raise InvalidArgumentError(f"--top must be >= 1; got {args.top}")
    if args.leave_out is not None and args.leave_out < 1:
        raise InvalidArgumentError(f"--leave-out must be >= 1; got {args.leave_out}")
    with store_from(args, read_only=args.read_only) as store:
        result = search_training_data(store, args.incident_id, args.version,
                                      signals=args.signals or SIGNALS, layer=args.layer,
                                      seed=args.seed)
        leave_out = None
        if args.leave_out:
            leave_out = leave_k_out(store, args.incident_id, args.version,
                                    result.top(args.leave_out), samples=args.samples,
                                    seed=args.seed)
    speed = ", ".join(f"{s} {v:,.0f}/s" for s, v in
                      result.provenance.get("examples_per_second", {}).items() if v)
    print(f"training-data search {result.run_id} ({'stored' if result.cached else 'computed'}): "
          f"{result.provenance.get('n_examples')} examples of {result.version} against "
          f"{len(result.provenance.get('queries', []))} offending interaction(s) of "
          f"{result.incident_id}; signals {', '.join(result.signals)} (examples/s: {speed})")
    columns = ["rank", "example_id", "score"] + [f"{s}_rank" for s in result.signals] \
        + ["prompt", "completion"]
    frame = result.to_frame().head(args.top)[columns]
    print_table(frame.round(4), max_colwidth=50)
    if leave_out is not None:
        print(f"\nleave-{len(leave_out.removed)}-out: {leave_out.parent} fine-tuned again "
              f"without them ({leave_out.retrained_version}), {leave_out.samples} samples per "
              f"interaction, {leave_out.n_prompts} prompts (clustered)")
        print_table(leave_out.to_frame().drop(columns=["incident_id"]).round(4))
        verdict = ("the failure disappears: the difference's interval excludes 0"
                   if leave_out.removes_failure else
                   "not shown: the difference's interval includes 0")
        print(f"  {verdict}")
    if args.figure:
        from llmrca.viz import to_png, training_search_figure

        with open(args.figure, "wb") as fh:
            fh.write(to_png(training_search_figure(result.to_frame(), top=args.top)))
        print(f"figure: {args.figure}")
    return 0
