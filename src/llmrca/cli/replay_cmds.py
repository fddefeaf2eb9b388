"""``llmrca replay`` and ``llmrca compare``: reproduction rates per version, side by side;
``llmrca runs list|show``: stored replay runs, read back without a model."""

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
    parser.add_argument("--backend", default="transformers",
                        help="replay backend: transformers (in process, default), ray "
                             "(Ray Data over a cluster; pip install 'llmrca[ray]') or vllm "
                             "(a CUDA GPU with the llmrca[vllm] extra; see docs/scale.md)")
    parser.add_argument("--ray-address", metavar="ADDRESS",
                        help="with --backend ray: join this running cluster (HOST:PORT of "
                             "`ray start --head`, auto, or ray://HOST:PORT); default: start a "
                             "local one")
    parser.add_argument("--workers", type=int, metavar="N",
                        help="with --backend ray: model replicas (default: as many as the "
                             "cluster's CPUs, or GPUs with --gpus-per-worker, hold)")
    parser.add_argument("--gpus-per-worker", type=float, default=0.0, metavar="G",
                        help="with --backend ray: GPUs each replica reserves (default 0: CPU)")
    parser.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: the best available)")
    parser.add_argument("--dtype", help="float32, bfloat16, float16 (default: float32 on every "
                                        "device)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--max-planned", type=int, default=None, metavar="N",
                        help="refuse plans of more than N samples (samples x interactions x "
                             "variants x versions; default 200,000 or $LLMRCA_MAX_PLANNED_SAMPLES)")


def add_parser(subparsers) -> None:
    replay = subparsers.add_parser(
        "replay", help="replay an incident against model versions; reproduction rates",
        description="Replay every interaction of an incident N times per version (per-sample "
                    "seeds, cached in the store), judge the outputs, and print reproduction "
                    "rates with 95%% intervals over prompts (the prompt is the unit; pooled "
                    "Wilson beside them), prompt-level sign-flip tests between versions (Fisher "
                    "beside them) and tests of each --variant against the original prompt. "
                    "A replay whose samples are all stored loads no model.")
    _common(replay, variants=True)
    replay.set_defaults(func=cmd_replay)

    runs = subparsers.add_parser(
        "runs", help="stored replay runs: list them, show one (read-only, no model)",
        description="Replay runs recorded in the store. `show` rebuilds a run's rates and tests "
                    "from the stored samples and judgements, on a read-only store.")
    runs_sub = runs.add_subparsers(dest="runs_command", metavar="SUBCOMMAND")
    listing = runs_sub.add_parser("list", help="runs of an incident (or all), newest first")
    listing.add_argument("incident", nargs="?", help="incident id (default: every incident)")
    listing.set_defaults(func=cmd_runs_list)
    show = runs_sub.add_parser("show", help="a stored run's rates and tests")
    show.add_argument("run_id", help="run id (from `llmrca runs list`)")
    show.set_defaults(func=cmd_runs_show)
    runs.set_defaults(func=lambda args: (runs.print_help(), 2)[1])

    compare = subparsers.add_parser(
        "compare", help="versions side by side: outputs, rates, log-prob of the incident output",
        description="Replay an incident on several versions and print, per interaction, each "
                    "version's most frequent output and reproduction rate, the teacher-forced "
                    "log-probability of the logged offending output, and where consecutive "
                    "versions first diverge on it.")
    _common(compare, variants=False)
    compare.set_defaults(func=cmd_compare)


def _config(args, variants=("original",)):
    """The :class:`~llmrca.replay.ReplayConfig` the arguments describe."""
    from llmrca.replay import ReplayConfig

    return ReplayConfig.build(samples=args.samples, temperature=args.temperature,
                              top_p=args.top_p, max_new_tokens=args.max_new_tokens,
                              seed=args.seed, variants=variants, judges=args.judge,
                              backend=args.backend, no_truncate=args.no_truncate)


def _backend_options(args) -> dict | None:
    """The --backend ray options, refused with another backend (they would do nothing)."""
    ray_options = {"address": args.ray_address, "workers": args.workers,
                   "gpus_per_worker": args.gpus_per_worker or None}
    given = {k: v for k, v in ray_options.items() if v is not None}
    if args.backend != "ray":
        if given:
            from llmrca.errors import InvalidArgumentError

            flags = ", ".join("--" + {"address": "ray-address"}.get(k, k).replace("_", "-")
                              for k in given)
            raise InvalidArgumentError(f"{flags}: only with --backend ray")
        return None
    return given


def _options(args) -> dict:
    """How to run (not part of the run's identity)."""
    return {"batch_size": args.batch_size, "progress": not args.no_progress,
            "interaction_ids": args.interaction, "device": args.device, "dtype": args.dtype,
            "max_planned": args.max_planned, "backend_options": _backend_options(args)}


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
        "rate": rows["rate"].map(lambda r: f"{r:.3f}")})
    if level == "version":
        # The headline: the interval with the prompt as the unit; pooled Wilson beside it.
        out["prompts"] = rows["n_prompts"].astype(int)
        out["95% CI (prompts)"] = [f"[{lo:.3f}, {hi:.3f}]" for lo, hi in
                                   zip(rows["cluster_low"], rows["cluster_high"])]
        out["Wilson (samples iid)"] = [f"[{lo:.3f}, {hi:.3f}]" for lo, hi in
                                       zip(rows["low"], rows["high"])]
        if "corrected_rate" in rows:
            out["judge-corrected"] = [f"{r:.3f} [{lo:.3f}, {hi:.3f}]" for r, lo, hi in zip(
                rows["corrected_rate"], rows["corrected_low"], rows["corrected_high"])]
        return out.drop(columns=["interaction"])
    out["95% CI (Wilson)"] = [f"[{lo:.3f}, {hi:.3f}]" for lo, hi in zip(rows["low"], rows["high"])]
    return out


def _print_header(result) -> None:
    info = result.info
    c = info["counts"]
    status = f"  status {info['status']}" if info.get("loaded") else ""
    print(f"run {result.run_id}  incident {result.incident_id}  seed {info['seed']}  "
          f"llmrca {info['package_version']}{status}")
    for v in info["versions"]:
        print(f"  {v['name']}: fingerprint {str(v['fingerprint'])[:12]}  engine {v['engine']}")
    speed = info.get("samples_per_second")
    if not info.get("loaded"):
        print(f"samples: {c['planned']} ({c['unique']} distinct), {c['cached']} from cache, "
              f"{c['generated']} generated" + (f" at {speed:.1f} samples/s" if speed else "")
              + f", {c['forward_passes']} forward passes"
              + ("" if info.get("models_loaded") else " (no model loaded)"))
    else:
        print(f"samples: {len(result.samples)} read back from the store (no model loaded)")
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
        print("\nbetween versions, paired by interaction (headline: sign-flip test over prompts, "
              "Holm-adjusted; Fisher's exact on pooled samples beside it):")
        print_table(pd.DataFrame({
            "variant": c["variant"], "A": c["version_a"], "B": c["version_b"],
            "rate A": c["rate_a"].map(lambda r: f"{r:.3f}"),
            "rate B": c["rate_b"].map(lambda r: f"{r:.3f}"),
            "prompts": c["n_prompts"],
            "A-B [95% CI, prompts]": [
                f"{d:+.3f} [{lo:+.3f}, {hi:+.3f}]" for d, lo, hi in
                zip(c["difference"], c["cluster_difference_low"], c["cluster_difference_high"])],
            "p (prompts)": c["cluster_p_value"].map(_fmt_p),
            "p (Holm)": c["cluster_p_holm"].map(_fmt_p),
            "Fisher p": c["p_value"].map(_fmt_p)}))
        fewest = int(c["n_prompts"].min())
        if fewest < 6:
            print(f"note: with {fewest} prompt(s) the sign-flip test cannot give p below "
                  f"{2 / 2 ** fewest:.3g}; more interactions are needed to reach 0.05")


def cmd_replay(args) -> int:
    from llmrca.replay import replay_incident

    with store_from(args) as store:
        result = replay_incident(store, args.incident, args.versions,
                                 _config(args, ["original", *args.variant]), **_options(args))
    _print_result(result)
    return 0


def _print_result(result) -> None:
    import pandas as pd

    _print_header(result)
    if result.rates.empty:
        print("\n(no judges ran: no rates)")
        return
    print("\nreproduction rate per version (95% interval over prompts: the prompt is the unit; "
          "pooled Wilson beside it):")
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
            "p (prompts)": p["cluster_p_value"].map(_fmt_p),
            "McNemar p": p["p_value"].map(_fmt_p), "McNemar (Holm)": p["p_holm"].map(_fmt_p)}))


def cmd_runs_list(args) -> int:
    import pandas as pd

    from llmrca.store import replay as replay_store

    with store_from(args, read_only=True) as store:
        runs = replay_store.list_runs(store, args.incident)
    if runs.empty:
        print("(no replay runs" + (f" of {args.incident})" if args.incident else ")"))
        return 0
    print_table(pd.DataFrame({
        "run": runs["run_id"], "incident": runs["incident_id"],
        "versions": [", ".join(v["name"] for v in vs) for vs in runs["versions"]],
        "samples": [p.get("samples") for p in runs["parameters"]],
        "T": [p.get("decoding", {}).get("temperature") for p in runs["parameters"]],
        "seed": runs["seed"], "status": runs["status"],
        "error": [(c or {}).get("error", "") if isinstance(c, dict) else "" for c in runs["counts"]],
        "updated": runs["updated_at"].astype(str).str[:19]}), max_colwidth=60)
    return 0


def cmd_runs_show(args) -> int:
    from llmrca.replay import load_replay

    with store_from(args, read_only=True) as store:
        result = load_replay(store, args.run_id)
    _print_result(result)
    return 0


def cmd_compare(args) -> int:
    import pandas as pd

    from llmrca.replay import compare_versions

    with store_from(args) as store:
        result = compare_versions(store, args.incident, args.versions, _config(args),
                                  **_options(args))
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
