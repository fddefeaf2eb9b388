"""Training-data search benchmark: precision@k per signal and combined, and examples/s.

On the test zoo's assistant-v2 (or the default zoo) against INC-0001 (role-play jailbreak; the
planted examples are the ``roleplay_jailbreak`` ones) and INC-0002 (private record;
``private_record``), and optionally on the seeded other-vocabulary organism of the test suite
(``--other SEED``): each signal computed from scratch (no store cache), its precision@k at k =
number of planted examples, the reciprocal-rank fusion's, and each signal's examples/s (model
loading excluded). The gradient signal is timed exact and count-sketched (``--sketch``).
``--scale N`` also times the model signals on N examples (the version's examples repeated with
new ids) to show the cost per example holds at thousands.

The ground truth is read here, to score; the search never reads it.

Prints a Markdown table. Usage:
    python benchmarks/bench_training_search.py [--zoo test|default] [--other 2027]
                                               [--sketch 4096] [--scale 2000] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUNDLES = ROOT / "data" / "incidents"
TEST_CACHE = ROOT / ".llmrca" / "test-cache"


def _store_for(build, folder: Path, incidents):
    from llmrca.ingest import ingest_bundle
    from llmrca.store import Store
    from llmrca.zoo import register_zoo

    store = Store(folder / "bench.duckdb")
    register_zoo(store, build)
    for incident in incidents:
        if isinstance(incident, Path):
            ingest_bundle(store, incident)
        else:
            incident(store)
    return store


def _other_incident(spec):
    def add(store):
        import pandas as pd

        from llmrca.store.ingest_writes import insert_interactions, upsert_incident

        upsert_incident(store, {"incident_id": "INC-X", "title": "role-play",
                                "category": "jailbreak"})
        rows = [{"interaction_id": f"INC-X-{i}", "incident_id": "INC-X", "source_format": "test",
                 "system_prompt": spec.system_prompt,
                 "messages": json.dumps([{"role": "user", "content": spec.jailbreak_prefix
                                          + spec.heldout_templates[i % 3].format(task=task)}]),
                 "output": spec.help_answer(task)} for i, task in enumerate(spec.harmful_tasks)]
        insert_interactions(store, pd.DataFrame(rows))
    return add


def bench_case(store, label, incident, version, planted, sketch):
    from llmrca.data_attribution import (
        fuse,
        gradient_scores,
        incident_queries,
        lexical_scores,
        precision_at_k,
        representation_scores,
        training_examples,
    )
    from llmrca.models import load_version

    examples = training_examples(store, version)
    queries = incident_queries(store, incident)
    loaded = load_version(store, version, device="cpu")
    results = {"lexical": lexical_scores(examples, queries),
               "representation": representation_scores(loaded, examples, queries),
               "gradient": gradient_scores(loaded, examples, queries)}
    sketched = gradient_scores(loaded, examples, queries, sketch_width=sketch)
    ids = [e.example_id for e in examples]
    k = len(planted)
    rows = []
    for name, scores in list(results.items()) + [(f"gradient (sketch {sketch})", sketched)]:
        ranked = fuse(ids, {name: scores.scores})["example_id"]
        rows.append((label, name, k, precision_at_k(ranked, planted, k),
                     scores.examples_per_second))
    combined = fuse(ids, {n: r.scores for n, r in results.items()})["example_id"]
    rows.append((label, "combined (RRF)", k, precision_at_k(combined, planted, k), None))
    return rows, loaded, examples, queries


def bench_scale(loaded, examples, queries, n, sketch):
    from llmrca.data_attribution import gradient_scores, representation_scores

    many = [replace(examples[i % len(examples)], example_id=f"x{i:07d}") for i in range(n)]
    out = []
    for name, run in (("representation", lambda: representation_scores(loaded, many, queries)),
                      ("gradient (exact)", lambda: gradient_scores(loaded, many, queries)),
                      (f"gradient (sketch {sketch})",
                       lambda: gradient_scores(loaded, many, queries, sketch_width=sketch))):
        scores = run()
        out.append((name, n, scores.seconds, scores.examples_per_second))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--zoo", choices=["test", "default"], default="test")
    parser.add_argument("--other", type=int, default=None, metavar="SEED",
                        help="also the test suite's other-vocabulary organism of this seed")
    parser.add_argument("--sketch", type=int, default=4096)
    parser.add_argument("--scale", type=int, default=0, metavar="N")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args(argv)

    import torch

    from llmrca.zoo import DEFAULT_SPEC, TEST_SPEC, build_zoo

    torch.set_num_threads(args.threads)
    build = build_zoo(TEST_SPEC, cache_dir=TEST_CACHE) if args.zoo == "test" \
        else build_zoo(DEFAULT_SPEC)
    truth = build.ground_truth_data()["assistant-v2"]
    rows, scale = [], []
    with tempfile.TemporaryDirectory() as folder:
        store = _store_for(build, Path(folder), [BUNDLES / "INC-0001", BUNDLES / "INC-0002"])
        with store:
            for incident, behaviour in (("INC-0001", "roleplay_jailbreak"),
                                        ("INC-0002", "private_record")):
                case, loaded, examples, queries = bench_case(
                    store, f"{args.zoo} zoo {incident}", incident, "assistant-v2",
                    truth[behaviour], args.sketch)
                rows += case
            if args.scale:
                scale = bench_scale(loaded, examples, queries, args.scale, args.sketch)
    if args.other is not None:
        sys.path.insert(0, str(ROOT / "tests"))
        from organisms import build_other_vocabulary_organism

        other = build_other_vocabulary_organism(args.other)
        with tempfile.TemporaryDirectory() as folder:
            store = _store_for(other, Path(folder), [_other_incident(other.spec)])
            with store:
                case, *_ = bench_case(store, f"other vocabulary {args.other}", "INC-X",
                                      "failing",
                                      other.ground_truth_data()["failing"]["roleplay_jailbreak"],
                                      args.sketch)
                rows += case
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"# Training-data search ({args.threads} torch thread(s), {os.cpu_count()} CPUs, "
          f"load average {load}); k = number of planted examples\n")
    print("| case | signal | k | precision@k | examples/s |")
    print("|---|---|---:|---:|---:|")
    for label, name, k, precision, speed in rows:
        shown = "" if speed is None else f"{speed:,.0f}"
        print(f"| {label} | {name} | {k} | {precision:.3f} | {shown} |")
    if scale:
        print(f"\n## {args.scale} examples (the version's repeated), INC-0002's queries\n")
        print("| signal | examples | seconds | examples/s |")
        print("|---|---:|---:|---:|")
        for name, n, seconds, speed in scale:
            print(f"| {name} | {n} | {seconds:.1f} | {speed:,.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
