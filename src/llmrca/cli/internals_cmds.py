"""``llmrca probe | patch | diff-weights``: model internals from the command line.

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
    patch.add_argument("--positions", choices=("last", "prompt", "all"), default="last")
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
    from llmrca.internals import probe_versions, refusal_directions

    with store_from(args, read_only=args.read_only) as store:
        probes = probe_versions(store, args.versions, folds=args.folds, seed=args.seed)
        directions = refusal_directions(store, args.versions, incident_id=args.incident_id)
    print(f"probes ({probes.result_id[:12]}): held-out accuracy, Wilson 95% interval")
    print_table(_rounded(probes.to_frame()))
    print(f"\nrefusal direction ({directions.result_id[:12]}): mean projection "
          f"(positive = {directions.info.get('positive', 'refused')} side)")
    frame = directions.to_frame().pivot_table(index=["version", "layer"], columns="set",
                                              values="mean").reset_index()
    print_table(_rounded(frame))
    return 0


def cmd_patch(args) -> int:
    from llmrca.internals import patch_versions

    with store_from(args, read_only=args.read_only) as store:
        result = patch_versions(store, args.incident_id, args.source, args.target,
                                positions=args.positions, span=args.span)
    print(f"patching {args.source} into {args.target} ({result.result_id[:12]}), positions "
          f"{args.positions}, span {args.span}: share of the gap restored per hidden state")
    print_table(_rounded(result.to_frame()))
    return 0


def cmd_diff(args) -> int:
    from llmrca.internals import diff_weights

    with store_from(args, read_only=args.read_only) as store:
        result = diff_weights(store, args.first, args.second)
    print(f"{args.second} - {args.first}: relative change {result.relative:.4f} "
          f"({result.result_id[:12]})")
    print_table(_rounded(result.to_frame()))
    return 0
