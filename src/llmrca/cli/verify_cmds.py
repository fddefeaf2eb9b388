"""``llmrca verify`` (a fix against an incident, or the whole regression suite) and
``llmrca incidents promote|demote`` (incidents as release gates).

Exit codes for CI: 0 the candidate passes, 1 it fails (or an error), 2 bad usage.
"""

from __future__ import annotations

from llmrca.cli.common import print_table, store_from


def add_parser(subparsers) -> None:
    from llmrca.verify import DEFAULT_MARGIN, DEFAULT_MAX_RATE

    verify = subparsers.add_parser(
        "verify", help="verify a fix: the incident must not reproduce, benign traffic must not "
                       "be refused more (exit 0 pass, 1 fail)",
        description="Replay an incident's offending interactions and a benign regression set "
                    "(the incident's context interactions, --benign FILE, or the shipped benign "
                    "requests) on a candidate version and a baseline. Passes when the upper "
                    "bound of the candidate's 95%% reproduction-rate interval is under "
                    "--max-rate and the upper bound of the 95%% Newcombe interval of its benign "
                    "refusal rate minus the baseline's is under --margin. The result is recorded "
                    "in the store. --suite checks every promoted incident "
                    "(`llmrca incidents promote`). Exit code: 0 pass, 1 fail, 2 bad usage.")
    verify.add_argument("incident", nargs="?", help="incident id (not with --suite)")
    verify.add_argument("--candidate", help="the version that should fix it")
    verify.add_argument("--baseline", help="the version to compare over-refusal against "
                                           "(default: the incident's deployed version)")
    verify.add_argument("--suite", action="store_true",
                        help="every incident promoted to the regression suite")
    verify.add_argument("--show", action="store_true",
                        help="show the recorded verifications (of INC, or of the suite)")
    verify.add_argument("--history", action="store_true",
                        help="with --show: every recorded row, not the latest per candidate")
    verify.add_argument("--max-rate", type=float, default=None,
                        help=f"threshold on the bound of the reproduction rate (default "
                             f"{DEFAULT_MAX_RATE}; with --suite each incident's own)")
    verify.add_argument("--margin", type=float, default=DEFAULT_MARGIN,
                        help=f"largest tolerated rise of the benign refusal rate (default "
                             f"{DEFAULT_MARGIN})")
    verify.add_argument("--samples", type=int,
                        help="samples per offending prompt (default: the fewest with which a "
                             "candidate that never reproduces could pass, at least 5)")
    verify.add_argument("--benign-samples", type=int,
                        help="samples per benign prompt (default: likewise, for --margin)")
    verify.add_argument("--benign", metavar="FILE",
                        help="benign interactions to add to the regression set (any interaction "
                             "format)")
    verify.add_argument("--seed", type=int, default=0, help="run seed (default 0)")
    verify.add_argument("--temperature", type=float, default=1.0,
                        help="sampling temperature; 0 = greedy, each prompt counts once "
                             "(default 1.0)")
    verify.add_argument("--max-new-tokens", type=int, default=32,
                        help="tokens generated at most per sample (default 32)")
    verify.add_argument("--judge", action="append", default=None, metavar="JUDGE",
                        help="judge of the offending set (repeatable; default: the incident "
                             "category's)")
    verify.add_argument("--no-record", action="store_true", help="do not record the result")
    verify.add_argument("--batch-size", type=int, default=16, help="largest generation batch")
    verify.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: the best available)")
    verify.add_argument("--dtype", help="float32, bfloat16, float16")
    verify.add_argument("--no-progress", action="store_true", help="no progress bar")
    verify.set_defaults(func=cmd_verify, _verify_parser=verify)


def _usage(args, message: str) -> int:
    import sys

    args._verify_parser.print_usage(sys.stderr)
    print(f"llmrca verify: error: {message}", file=sys.stderr)
    return 2


def _replay_options(args) -> dict:
    return {"samples": args.samples, "benign_samples": args.benign_samples, "seed": args.seed,
            "temperature": args.temperature, "max_new_tokens": args.max_new_tokens,
            "judges": args.judge, "benign": args.benign, "record": not args.no_record,
            "batch_size": args.batch_size, "progress": not args.no_progress,
            "device": args.device, "dtype": args.dtype}


def cmd_verify(args) -> int:
    if args.show:
        if args.suite == bool(args.incident):
            return _usage(args, "--show needs an incident id, or --suite")
        return _show(args)
    if args.suite and args.incident:
        return _usage(args, "give an incident id or --suite, not both")
    if not args.suite and not args.incident:
        return _usage(args, "give an incident id, or --suite")
    if not args.candidate:
        return _usage(args, "--candidate is required")
    if args.suite and args.max_rate is not None:
        return _usage(args, "with --suite each incident has its own --max-rate (set it with "
                            "`llmrca incidents promote INC --max-rate R`)")
    from llmrca import verify

    with store_from(args) as store:
        if args.suite:
            suite = verify.verify_suite(store, args.candidate, baseline=args.baseline,
                                        margin=args.margin, **_replay_options(args))
            return _print_suite(suite)
        result = verify.verify_fix(
            store, args.incident, args.candidate, baseline=args.baseline,
            max_rate=verify.DEFAULT_MAX_RATE if args.max_rate is None else args.max_rate,
            margin=args.margin, **_replay_options(args))
    _print_header(result)
    print_table(result.table())
    _print_verdict(result.passed, result.reasons, result.record)
    return 0 if result.passed else 1


def _print_header(result) -> None:
    r = result.record
    baseline = r["baseline"] or "none (over-refusal: the candidate's own refusal bound)"
    print(f"verify {r['incident_id']}: candidate {r['candidate']}, baseline {baseline}")
    print(f"  offending set: {r['incident_prompts']} interaction(s) x {r['samples']} samples; "
          f"benign set: {r['benign_set']} x {r['benign_samples']} samples; temperature "
          f"{r['temperature']:g}, seed {r['seed']}")
    if result.info.get("greedy"):
        print("  note: greedy decoding: each prompt counts once, whatever --samples")
    print(f"  judges: offending {', '.join(r['judges']['incident'])}; benign "
          f"{', '.join(r['judges']['benign'])} (refused = label 'refusal')")
    print(f"  intervals (95%): {r['interval_method']}\n")


def _print_verdict(passed: bool, reasons, record) -> None:
    print(f"\nVERDICT: {'PASS' if passed else 'FAIL'}")
    for reason in reasons:
        print(f"  - {reason}")
    if record is not None:
        print(f"recorded: verification {record['verification_id']}  runs: incident "
              f"{record['run_ids']['incident']}, benign {', '.join(record['run_ids']['benign'])}")


def _print_suite(suite) -> int:
    first = suite.verifications[0].record
    print(f"verify --suite: candidate {first['candidate']}, baseline "
          f"{first['baseline'] or 'none'}; {len(suite.verifications)} promoted incident(s); "
          f"intervals (95%): {first['interval_method']}\n")
    print_table(suite.table())
    benign = suite.verifications[0]
    print(f"\nbenign set: {first['benign_set']} x {first['benign_samples']} samples")
    rows = [r for r in benign.table().to_dict("records") if r["check"] != "incident reproduction"]
    import pandas as pd

    print_table(pd.DataFrame(rows))
    reasons = list(dict.fromkeys(reason for v in suite.verifications for reason in v.reasons))
    print(f"\nVERDICT: {'PASS' if suite.passed else 'FAIL'}  (suite run {suite.suite_id})")
    for reason in reasons:
        print(f"  - {reason}")
    return 0 if suite.passed else 1


def _show(args) -> int:
    import pandas as pd

    from llmrca import verify

    with store_from(args, read_only=True) as store:
        if args.suite:
            promoted = verify.regression_suite(store)
            print("regression suite (promoted incidents):")
            print_table(promoted[["incident_id", "max_rate", "note", "updated_at"]])
            frame = verify.latest_verifications(store, history=args.history)
            frame = frame[frame["suite_id"].notna()]
        else:
            frame = verify.latest_verifications(store, args.incident, history=args.history)
    if frame.empty:
        print("(no verification recorded)")
        return 0
    print(f"\nverifications{' (latest per candidate and baseline)' if not args.history else ''}:")
    print_table(pd.DataFrame({
        "created_at": frame["created_at"].astype(str).str[:19],
        "incident": frame["incident_id"], "candidate": frame["candidate"],
        "baseline": frame["baseline"].fillna("-"),
        "incident k/n": [f"{k}/{n}" for k, n in zip(frame["incident_k"], frame["incident_n"])],
        "bound": frame["incident_high"].map(lambda v: f"{v:.3f}"),
        "max-rate": frame["max_rate"].map(lambda v: f"{v:g}"),
        "refusal k/n": [f"{k}/{n}" for k, n in zip(frame["refusal_k"], frame["refusal_n"])],
        "over-refusal bound": frame["refusal_difference_high"].map(lambda v: f"{v:+.3f}"),
        "margin": frame["margin"].map(lambda v: f"{v:g}"),
        "verdict": frame["verdict"].str.upper(),
        "suite": frame["suite_id"].fillna("-").str[:14]}))
    return 0


def cmd_promote(args) -> int:
    from llmrca.verify import promote_incident

    with store_from(args) as store:
        action = promote_incident(store, args.incident_id, args.max_rate, args.note)
    print(f"{args.incident_id}: {action} (release gate: reproduction-rate bound < "
          f"{args.max_rate:g}); `llmrca verify --suite --candidate VERSION` replays it")
    return 0


def cmd_demote(args) -> int:
    from llmrca.verify import demote_incident

    with store_from(args) as store:
        demote_incident(store, args.incident_id)
    print(f"{args.incident_id}: no longer in the regression suite")
    return 0
