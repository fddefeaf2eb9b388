"""Ray backend benchmark: samples/s with 1 vs 2 model replicas on a zoo organism.

The same prompts and per-sample seeds go through:
- the in-process transformers backend (one torch thread: what one replica gets),
- the ``ray`` backend with ``workers=1``, then ``workers=2`` (each replica reserves 1 CPU, so
  Ray gives its torch one thread),
on one Ray cluster (a local one with ``--num-cpus`` CPUs, or ``--ray-address``). The outputs must
be identical (tokens) to the in-process ones.

For each Ray run it reports the end-to-end seconds (a Ray Data pipeline starts its actors and
loads a replica in each: the fixed cost of a run), the time to the first streamed chunk, and
the steady rate (samples after the first chunk / time from the first chunk to the last), and
the 2-vs-1 ratios of both. Prints a Markdown table. Usage:
    python benchmarks/bench_ray.py [--prompts 48] [--samples 8] [--batch-size 8]
                                   [--max-new-tokens 24] [--num-cpus 2] [--ray-address ADDR]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_replay import SYSTEM, zoo_models, zoo_requests


def plan(loaded, requests, samples):
    from llmrca.replay import render_prompt, sample_seed

    prompts, seeds = [], []
    for i, request in enumerate(requests):
        prompt = render_prompt(loaded.tokenizer, SYSTEM, [{"role": "user", "content": request}])
        for s in range(samples):
            prompts.append(prompt.token_ids)
            seeds.append(sample_seed(0, f"bench-{i}", loaded.name, s))
    return prompts, seeds


def run_ray(loaded, prompts, seeds, decoding, *, workers, batch_size, address, num_cpus):
    from llmrca.replay import RayBackend

    # zoo_models keys the loaded model by its weights' sha256, not by the folder fingerprint
    # the replicas would re-hash: trust it (the files are the benchmark's own cache).
    backend = RayBackend(loaded, batch_size=batch_size, workers=workers, address=address,
                         num_cpus=num_cpus, verify=False)
    arrivals: list[tuple[float, int]] = []
    results = {}
    start = time.perf_counter()
    for chunk in backend.generate_chunks(prompts, decoding, seeds, chunk_size=batch_size):
        arrivals.append((time.perf_counter() - start, len(chunk)))
        results.update(chunk)
    total = time.perf_counter() - start
    outputs = [results[i] for i in range(len(prompts))]
    first_t, first_n = arrivals[0]
    steady = ((len(prompts) - first_n) / (arrivals[-1][0] - first_t)
              if len(arrivals) > 1 and arrivals[-1][0] > first_t else float("nan"))
    return {"workers": backend.last_pool_size, "seconds": total, "first_chunk": first_t,
            "steady": steady, "outputs": outputs}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--version", default="assistant-v2")
    parser.add_argument("--prompts", type=int, default=48)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--num-cpus", type=int, default=2, help="CPUs of the local cluster")
    parser.add_argument("--ray-address", default=None, help="join this cluster instead")
    args = parser.parse_args(argv)

    import torch

    from llmrca.replay import Decoding, TransformersBackend
    from llmrca.replay.ray_backend import connect

    build, (loaded,) = zoo_models([args.version])
    prompts, seeds = plan(loaded, zoo_requests(build, args.prompts), args.samples)
    decoding = Decoding(temperature=1.0, max_new_tokens=args.max_new_tokens)

    torch.set_num_threads(1)
    local = TransformersBackend(loaded, batch_size=args.batch_size)
    start = time.perf_counter()
    reference = local.generate(prompts, decoding, seeds)
    local_s = time.perf_counter() - start

    started = time.perf_counter()
    ray = connect(args.ray_address, num_cpus=args.num_cpus)
    startup_s = time.perf_counter() - started
    cpus = ray.cluster_resources().get("CPU", 0)
    runs = [run_ray(loaded, prompts, seeds, decoding, workers=w, batch_size=args.batch_size,
                    address=args.ray_address, num_cpus=args.num_cpus) for w in (1, 2)]
    for run in runs:
        if [o.token_ids for o in run["outputs"]] != [o.token_ids for o in reference]:
            raise SystemExit(f"ray ({run['workers']} workers) tokens differ from the in-process "
                             f"backend's: per-sample seeding is broken")
    n = len(prompts)
    tokens = sum(len(o.token_ids) for o in reference)
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(f"## Ray backend: test zoo {args.version}, {args.prompts} prompts x {args.samples} "
          f"samples = {n} samples ({tokens} tokens), batch {args.batch_size}, "
          f"max {args.max_new_tokens} new tokens")
    print(f"\n{when}; {platform.machine()}, {os.cpu_count()} CPU cores visible, Ray cluster "
          f"{'at ' + args.ray_address if args.ray_address else 'local'} with {cpus:g} CPUs "
          f"(cluster start {startup_s:.1f} s, not counted below); load average "
          f"{os.getloadavg()[0]:.1f}\n")
    print("| generation | replicas | seconds | first chunk at | samples/s end to end | "
          "samples/s steady |")
    print("|---|---:|---:|---:|---:|---:|")
    print(f"| in process (1 thread) | - | {local_s:.2f} | - | {n / local_s:.1f} | - |")
    for run in runs:
        print(f"| ray | {run['workers']} | {run['seconds']:.2f} | {run['first_chunk']:.2f} s | "
              f"{n / run['seconds']:.1f} | {run['steady']:.1f} |")
    one, two = runs
    print(f"\n2 vs 1 replicas: end to end **{one['seconds'] / two['seconds']:.2f}x**, steady "
          f"**{two['steady'] / one['steady']:.2f}x**; tokens identical to the in-process "
          f"backend in both runs.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
