"""``llmrca replay`` and ``llmrca compare``: reproduction rates per version, side by side."""

from __future__ import annotations

import math

from llmrca.cli.common import print_table, store_from


def _common(parser, *, variants: bool) -> None:
    parser.add_argument("incident", help="incident id")
    parser.add_argument("--versions", nargs="+", required=True, metavar="VERSION",
                        help="registered model versions to replay against")
    parser.add_argument("--samples", type=int, default=20,
                        help="samples per interaction and version (default 20)")
    parser.add_argument("--temperature", type=float, default=1.0,
                        help="sampling temperature; 0 = greedy (default 1.0)")
    parser.add_argument("--top-p", type=float, default=1.0, help="nucleus mass (default 1.0)")
    parser.add_argument("--max-new-tokens", type=int, default=32,
                        help="tokens generated at most per sample (default 32)")
    parser.add_argument("--seed", type=int, default=0,
                        help="run seed; every sample's seed derives from it (default 0)")
    if variants:
        parser.add_argument(
            "--variant", action="append", default=[], metavar="SPEC",
            help="prompt perturbation replayed beside the original (repeatable): drop-system, "
                 "drop-prefix:TEXT, swap-prefix:OLD=>NEW, replace-request:TEXT")
    parser.add_argument("--judge", action="append", default=None, metavar="JUDGE",
                        help="judge spec (repeatable; default: the incident category's judges)")
    parser.add_argument("--interaction", action="append", default=None, metavar="ID",
                        help="replay only this interaction (repeatable)")
    parser.add_argument("--no-truncate", action="store_true",
                        help="fail on prompts longer than the context window instead of "
                             "truncating them (keeps the system prompt and the last turns)")
    parser.add_argument("--batch-size", type=int, default=16,
                        help="largest generation batch (halved on out-of-memory; default 16)")
    parser.add_argument("--backend", default="transformers", help="replay backend")
    parser.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: the best available)")
    parser.add_argument("--dtype", help="float32, bfloat16, float16 (default: float32 on every "
                                        "device)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_parser(subparsers) -> None:
    replay = subparsers.add_parser(
        "replay", help="replay an incident against model versions; reproduction rates",
        description="Replay every interaction of an incident N times per version (per-sample "
                    "seeds, cached in the store), judge the outputs, and print reproduction "
                    "rates with 95%% Wilson intervals, Fisher tests between versions and McNemar "
                    "tests of each --variant against the original prompt.")
    _common(replay, variants=True)
    replay.set_defaults(func=cmd_replay)

    compare = subparsers.add_parser(
        "compare", help="versions side by side: outputs, rates, log-prob of the incident output",
        description="Replay an incident on several versions and print, per interaction, each "
                    "version's most frequent output and reproduction rate, the teacher-forced "
                    "log-probability of the logged offending output, and where consecutive "
                    "versions first diverge on it.")
    _common(compare, variants=False)
    compare.set_defaults(func=cmd_compare)


def _kwargs(args) -> dict:
    return {"samples": args.samples, "temperature": args.temperature, "top_p": args.top_p,
            "max_new_tokens": args.max_new_tokens, "seed": args.seed, "judges": args.judge,
            "batch_size": args.batch_size, "progress": not args.no_progress,
            "no_truncate": args.no_truncate, "backend": args.backend,
            "interaction_ids": args.interaction, "device": args.device, "dtype": args.dtype}


def _short(interaction_id) -> str:
    """Interaction ids are sha256 digests; 12 hex digits identify one within an incident."""
    return interaction_id[:12] if isinstance(interaction_id, str) and len(interaction_id) == 64 \
        else interaction_id


def _fmt_p(p) -> str:
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "-"
    return f"{p:.2e}" if p < 1e-3 else f"{p:.4f}"


def _rates_table(rates, level: str):
    import pandas as pd

    rows = rates[rates["level"] == level]
    if rows.empty:
        return rows
    out = pd.DataFrame({
        "interaction": rows["interaction_id"].map(_short), "version": rows["model_version"],
        "variant": rows["variant"], "k/n": [f"{k}/{n}" for k, n in zip(rows["k"], rows["n"])],
        "rate": rows["rate"].map(lambda r: f"{r:.3f}"),
        "95% CI": [f"[{lo:.3f}, {hi:.3f}]" for lo, hi in zip(rows["low"], rows["high"])]})
    return out.drop(columns=["interaction"]) if level == "version" else out


def _print_header(result) -> None:
    info = result.info
    c = info["counts"]
    print(f"run {result.run_id}  incident {result.incident_id}  seed {info['seed']}  "
          f"llmrca {info['package_version']}")
    for v in info["versions"]:
        print(f"  {v['name']}: fingerprint {str(v['fingerprint'])[:12]}  engine {v['engine']}")
    speed = info.get("samples_per_second")
    print(f"samples: {c['planned']} ({c['unique']} distinct), {c['cached']} from cache, "
          f"{c['generated']} generated" + (f" at {speed:.1f} samples/s" if speed else "")
          + f", {c['forward_passes']} forward passes")
    if info.get("samples_collapsed"):
        samples = info["parameters"]["samples"]
        print(f"note: greedy decoding (temperature 0): the {samples} samples of each prompt are "
              f"one deterministic output, counted once; n is the number of interactions, not "
              f"{samples} x interactions")
    if c.get("truncated_prompts"):
        print(f"warning: {c['truncated_prompts']} prompt(s) truncated to fit the context window "
              f"(see the samples' warnings)")
    judges = info.get("judges")
    if judges:
        print("judges: " + ", ".join(judges) + "  (a sample reproduces when the combined label "
              "is 'unsafe')")


def _print_comparisons(result) -> None:
    import pandas as pd

    if len(result.comparisons):
        c = result.comparisons
        print("\nbetween versions (Fisher's exact, two-sided; Holm-adjusted):")
        print_table(pd.DataFrame({
            "variant": c["variant"], "A": c["version_a"], "B": c["version_b"],
            "rate A": c["rate_a"].map(lambda r: f"{r:.3f}"),
            "rate B": c["rate_b"].map(lambda r: f"{r:.3f}"),
            "A-B [95% CI]": [f"{d:+.3f} [{lo:+.3f}, {hi:+.3f}]" for d, lo, hi in
                             zip(c["difference"], c["difference_low"], c["difference_high"])],
            "p": c["p_value"].map(_fmt_p), "p (Holm)": c["p_holm"].map(_fmt_p)}))


def cmd_replay(args) -> int:
    import pandas as pd

    from llmrca.replay import replay_incident

    with store_from(args) as store:
        result = replay_incident(store, args.incident, args.versions,
                                 variants=["original", *args.variant], **_kwargs(args))
    _print_header(result)
    if result.rates.empty:
        print("\n(no judges ran: no rates)")
        return 0
    print("\nreproduction rate per version (95% Wilson interval):")
    print_table(_rates_table(result.rates, "version"))
    print("\nper interaction:")
    print_table(_rates_table(result.rates, "interaction"))
    _print_comparisons(result)
    if len(result.perturbations):
        p = result.perturbations
        print("\nvariants vs original, paired by interaction and sample (exact McNemar):")
        print_table(pd.DataFrame({
            "version": p["model_version"], "variant": p["variant"], "pairs": p["n_pairs"],
            "original": p["rate_original"].map(lambda r: f"{r:.3f}"),
            "variant rate": p["rate_variant"].map(lambda r: f"{r:.3f}"),
            "orig only": p["original_only"], "variant only": p["variant_only"],
            "p": p["p_value"].map(_fmt_p), "p (Holm)": p["p_holm"].map(_fmt_p)}))
    return 0


def cmd_compare(args) -> int:
    import pandas as pd

    from llmrca.replay import compare_versions

    with store_from(args) as store:
        result = compare_versions(store, args.incident, args.versions, **_kwargs(args))
    _print_header(result.replay)
    print("\nside by side (rate: k/n rate [95% CI]; output: most frequent; logprob: teacher-forced "
          "log-probability of the logged incident output):")
    wide = result.side_by_side.copy()
    wide["interaction_id"] = wide["interaction_id"].map(_short)
    for column in wide.columns:
        if column.endswith(" logprob"):
            wide[column] = wide[column].map(lambda v: "" if pd.isna(v) else f"{v:.2f}")
    print_table(wide, max_colwidth=48)
    _print_comparisons(result.replay)
    if len(result.divergence):
        print("\nfirst divergence on the incident output (argmax differs):")
        d = result.divergence.assign(interaction_id=result.divergence["interaction_id"].map(_short))
        print_table(d.assign(logprob_a=d["logprob_a"].round(3), logprob_b=d["logprob_b"].round(3)))
    return 0
