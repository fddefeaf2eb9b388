"""Hidden-state extraction benchmark on a zoo model organism.

The same rendered prompts through :func:`llmrca.models.forward.hidden_states` with
``batch_size=B`` (left-padded, explicit positions) and with ``batch_size=1`` (no padding at all).
The two must agree within float tolerance; reports prompts/s of each and the speed-up.

Prints a Markdown table. Usage:
    python benchmarks/bench_internals.py [--zoo test|default] [--version assistant-v2]
                                         [--prompts 256] [--batch-size 32] [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
import time

from bench_replay import SYSTEM, zoo_models, zoo_requests


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
    return 0


if __name__ == "__main__":
    sys.exit(main())
