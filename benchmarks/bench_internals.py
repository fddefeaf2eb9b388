"""Hidden-state extraction benchmark on a zoo model organism.

The same rendered prompts through :func:`llmrca.models.forward.hidden_states` with
``batch_size=B`` (left-padded, explicit positions) and with ``batch_size=1`` (no padding at all).
The two must agree within float tolerance; reports prompts/s of each and the speed-up.

Then segment attribution (:func:`llmrca.attribution.segment_attribution`, captum
FeatureAblation and ShapleyValueSampling) of the sample bundle INC-0001's offending outputs on
the same version, batched (``perturbations_per_eval=16``) against captum's default of one
perturbed prompt per forward pass (``perturbations_per_eval=1``): wall time of each, the ratio,
and the max abs difference of the scores.

Prints a Markdown table. Usage:
    python benchmarks/bench_internals.py [--zoo test|default] [--version assistant-v2]
                                         [--prompts 256] [--batch-size 32] [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from bench_replay import SYSTEM, zoo_models, zoo_requests

BUNDLE = Path(__file__).resolve().parents[1] / "data" / "incidents" / "INC-0001"


def bench_extraction(loaded, prompts, batch_size: int, repeats: int):
    from llmrca.models.forward import hidden_states

    timings, outputs = {}, {}
    for label, size in (("batched", batch_size), ("one at a time", 1)):
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            outputs[label] = hidden_states(loaded.model, loaded.tokenizer, prompts,
                                           batch_size=size)
            best = min(best, time.perf_counter() - start)
        timings[label] = best
    difference = float(abs(outputs["batched"] - outputs["one at a time"]).max())
    return timings, difference, outputs["batched"].shape


def incident_items(build, loaded, bundle: Path):
    """INC-0001's offending interactions as ``(template, values, targets)`` on ``loaded``."""
    import tempfile

    from llmrca.attribution import WeightedTarget, auto_segments
    from llmrca.attribution.api import _messages, _records
    from llmrca.attribution.segments import locate, segment_template
    from llmrca.ingest.bundle import ingest_bundle
    from llmrca.replay import render_prompt
    from llmrca.store import Store
    from llmrca.store import replay as replay_store
    from llmrca.zoo import register_zoo

    items = []
    with tempfile.TemporaryDirectory() as folder, Store(Path(folder) / "b.duckdb") as store:
        register_zoo(store, build)
        ingest_bundle(store, bundle)
        for row in _records(replay_store.incident_interactions(store, "INC-0001", None)):
            if not isinstance(row.output, str) or not row.output:
                continue
            system = row.system_prompt if isinstance(row.system_prompt, str) else None
            messages = _messages(row.messages)
            text = render_prompt(loaded.tokenizer, system, messages).text
            segs = auto_segments(system, messages)
            template, values = segment_template(text, locate(text, system, messages, segs))
            ids = loaded.tokenizer(row.output, add_special_tokens=False)["input_ids"]
            items.append((template, values, [WeightedTarget(tuple(ids))]))
    return items


def bench_attribution(loaded, items, method: str, repeats: int):
    from llmrca.attribution import segment_attribution

    timings, scores = {}, {}
    for label, per_eval in (("batched", 16), ("one at a time", 1)):
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            scores[label] = [segment_attribution(loaded.model, loaded.tokenizer, t, v,
                                                 [""] * len(v), targets, method=method,
                                                 perturbations_per_eval=per_eval)
                             for t, v, targets in items]
            best = min(best, time.perf_counter() - start)
        timings[label] = best
    difference = max(abs(a - b) for x, y in zip(scores["batched"], scores["one at a time"])
                     for a, b in zip(x.scores, y.scores))
    passes = {k: sum(r.forward_passes for r in v) for k, v in scores.items()}
    return timings, difference, passes


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--zoo", choices=["test", "default"], default="test")
    parser.add_argument("--version", default="assistant-v2")
    parser.add_argument("--prompts", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args(argv)

    import torch

    from llmrca.replay import render_prompt

    torch.set_num_threads(args.threads)
    build, (loaded,) = zoo_models([args.version], args.zoo)
    prompts = [render_prompt(loaded.tokenizer, SYSTEM, [{"role": "user", "content": r}]).token_ids
               for r in zoo_requests(build, args.prompts)]
    timings, difference, shape = bench_extraction(loaded, prompts, args.batch_size, args.repeats)
    lengths = sorted(len(p) for p in prompts)
    print(f"# Hidden-state extraction: {args.zoo} zoo, {args.version}, {len(prompts)} prompts "
          f"({lengths[0]}-{lengths[-1]} tokens), output {tuple(shape)}, "
          f"{args.threads} thread(s), best of {args.repeats}\n")
    print("| mode | batch | seconds | prompts/s |")
    print("|---|---|---|---|")
    for label, size in (("batched", args.batch_size), ("one at a time", 1)):
        seconds = timings[label]
        print(f"| {label} | {size} | {seconds:.3f} | {len(prompts) / seconds:.0f} |")
    print(f"\nspeed-up {timings['one at a time'] / timings['batched']:.1f}x; "
          f"max |batched - one at a time| = {difference:.2e}")
    if difference > 1e-3:
        print("batched and one-at-a-time hidden states differ", file=sys.stderr)
        return 1
    if args.zoo != "test":
        return 0
    items = incident_items(build, loaded, BUNDLE)
    print(f"\n# Segment attribution: INC-0001 on {args.version}, {len(items)} prompts "
          f"({sum(len(v) for _, v, _ in items)} segments), best of {args.repeats}\n")
    print("| method | perturbations_per_eval | forward passes | seconds |")
    print("|---|---|---|---|")
    worst = 0.0
    for method in ("ablation", "shapley"):
        timings, difference, passes = bench_attribution(loaded, items, method, args.repeats)
        worst = max(worst, difference)
        for label, per_eval in (("batched", 16), ("one at a time", 1)):
            print(f"| {method} | {per_eval} | {passes[label]} | {timings[label]:.3f} |")
        print(f"| {method}: one at a time / batched | | | "
              f"{timings['one at a time'] / timings['batched']:.1f}x "
              f"(max abs score diff {difference:.2e}) |")
    if worst > 1e-4:
        print("batched and one-at-a-time attributions differ", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
