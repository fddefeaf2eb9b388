"""``llmrca probe [--causal] | patch | diff-weights``: model internals from the command line.

Each computes once and stores its result (keyed by versions, fingerprints and parameters);
asking again prints the stored result. ``--read-only`` reads a stored result without writing.
"""

from __future__ import annotations

from llmrca.cli.common import print_table, store_from


def add_parser(subparsers) -> None:
    probe = subparsers.add_parser(
        "probe", help="probe accuracy per layer and refusal-direction projections",
        description="Linear probes (harmful vs harmless: the first version's training data "
                    "labelled by the refusal judge) per version and layer, cross-validated, "
                    "and the refusal direction's projection of the incident's prompts.")
    probe.add_argument("incident_id")
    probe.add_argument("--versions", nargs="+", required=True, help="model versions")
    probe.add_argument("--folds", type=int, default=5)
    probe.add_argument("--seed", type=int, default=0)
    probe.add_argument("--causal", action="store_true",
                       help="also the causal checks of the refusal direction, sampled and "
                            "judged: ablate the first version's direction in it, add the "
                            "second version's in the second (exactly two versions: safe, "
                            "failing)")
    probe.add_argument("--samples", type=int, default=8,
                       help="sampled answers per prompt and condition of the causal checks")
    probe.add_argument("--layer", type=int, default=None,
                       help="hidden state of the causal checks' direction (default: the middle "
                            "layer where the safe version separates the classes most)")
    probe.add_argument("--read-only", action="store_true", help="only read stored results")
    probe.set_defaults(func=cmd_probe)

    patch = subparsers.add_parser(
        "patch", help="patch a safe version's residual stream into a failing one, per layer",
        description="Share of the contrastive gap (log p(offending output) - log p(the safe "
                    "version's answer)) each patched layer restores, on the incident's "
                    "offending interactions.")
    patch.add_argument("incident_id")
    patch.add_argument("--from", dest="source", required=True, help="the safe version")
    patch.add_argument("--into", dest="target", required=True, help="the failing version")
    patch.add_argument("--positions", choices=("last", "prompt", "all", "both"), default="both",
                       help="patched positions: the last prompt token, every prompt token, "
                            "every position (prompt and output), or both last and all side "
                            "by side (default)")
    patch.add_argument("--span", choices=("output", "first"), default="output",
                       help="gap over the whole output, or at the first differing token")
    patch.add_argument("--read-only", action="store_true", help="only read stored results")
    patch.set_defaults(func=cmd_patch)

    diff = subparsers.add_parser(
        "diff-weights", help="norm of the weight change per layer and module",
        description="Where a fine-tune wrote: |b - a| per layer and module, and relative to |a|.")
    diff.add_argument("first")
    diff.add_argument("second")
    diff.add_argument("--read-only", action="store_true", help="only read stored results")
    diff.set_defaults(func=cmd_diff)


def _rounded(frame):
    return frame.round(4)


def cmd_probe(args) -> int:
    from llmrca.errors import InvalidArgumentError
    from llmrca.internals import causal_checks, probe_versions, refusal_directions

    if args.causal and len(args.versions) != 2:
        raise InvalidArgumentError(f"probe --causal needs exactly two versions (safe, failing); "
                                   f"got {len(args.versions)}: {' '.join(args.versions)}")
    with store_from(args, read_only=args.read_only) as store:
        probes = probe_versions(store, args.versions, folds=args.folds, seed=args.seed)
        directions = refusal_directions(store, args.versions, incident_id=args.incident_id)
        causal = (causal_checks(store, args.incident_id, args.versions[0], args.versions[1],
                                samples=args.samples, seed=args.seed, layer=args.layer)
                  if args.causal else None)
    print(f"probes ({probes.result_id[:12]}): held-out accuracy, Wilson 95% interval")
    print_table(_rounded(probes.to_frame()))
    print(f"\nrefusal direction ({directions.result_id[:12]}): mean projection "
          f"(positive = {directions.info.get('positive', 'refused')} side)")
    frame = directions.to_frame().pivot_table(index=["version", "layer"], columns="set",
                                              values="mean").reset_index()
    print_table(_rounded(frame))
    if causal is not None:
        rates = causal.to_frame()
        print(f"\ncausal checks ({causal.result_id[:12]}), direction at hidden state "
              f"{int(rates['layer'].iloc[0])}: rate with the intervention - without, 95% "
              f"interval, Fisher p")
        for r in rates.to_dict(orient="records"):
            print(f"  {r['intervention']} in {r['version']}: {r['measure']} "
                  f"{r['baseline_rate']:.2f} -> {r['intervened_rate']:.2f} "
                  f"({r['difference']:+.2f} [{r['difference_low']:+.2f}, "
                  f"{r['difference_high']:+.2f}], p = {r['p_value']:.3g})")
        print_table(_rounded(rates))
    return 0


def cmd_patch(args) -> int:
    from llmrca.internals import patch_versions

    kinds = ("last", "all") if args.positions == "both" else (args.positions,)
    with store_from(args, read_only=args.read_only) as store:
        results = {k: patch_versions(store, args.incident_id, args.source, args.target,
                                     positions=k, span=args.span) for k in kinds}
    for kind, result in results.items():
        frame = result.to_frame()
        best = frame.loc[frame["share"].idxmax()] if frame["share"].notna().any() else None
        print(f"patching {args.source} into {args.target} ({result.result_id[:12]}), positions "
              f"{kind}, span {args.span}: share of the gap restored per hidden state")
        if best is not None:
            print(f"most restored: {best['share']:.2f} of the gap at hidden state "
                  f"{int(best['state'])} (positions {kind})")
        print_table(_rounded(frame))
    return 0


def cmd_diff(args) -> int:
    from llmrca.internals import diff_weights

    with store_from(args, read_only=args.read_only) as store:
        result = diff_weights(store, args.first, args.second)
    print(f"{args.second} - {args.first}: relative change {result.relative:.4f} "
          f"({result.result_id[:12]})")
    print_table(_rounded(result.to_frame()))
    return 0
