"""The GPU check: one script a GPU machine runs in one go (it also runs on CPU, vLLM reported
unavailable).

On a zoo model organism (built here, or reused from the test cache):

1. transformers backend: greedy and sampled generation, tokens/s.
2. vLLM backend (when ``vllm`` is installed and a CUDA GPU is seen; otherwise the reason is
   recorded): the same prompts and per-sample seeds, tokens/s; **greedy agreement** with
   transformers (share of prompts with identical token sequences, the first divergence position
   of each that differs, the largest log-probability gap before it) -- vLLM's kernels are not
   bit-identical, so this is measured, not assumed; **sampled rates** compared: the refusal rate
   of each backend's samples (``refusal`` judge), paired by prompt, with a cluster-aware
   interval on the difference (:func:`llmrca.stats.clustered_difference`).
3. Ray backend (when a backend named ``ray`` is registered and ``ray`` imports): the same sampled
   generation through it, tokens/s, and whether its tokens equal the in-process backend's.

Prints a Markdown table and writes everything as JSON to ``--out``. Usage:
    python benchmarks/gpu_check.py --out gpu_check.json [--zoo test|default]
        [--version assistant-v2] [--prompts 32] [--samples 8] [--max-new-tokens 24]
        [--device cuda] [--dtype float32] [--batch-size 64]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

#: The test suite's zoo cache (git-ignored), shared so that the check does not retrain.
TEST_CACHE = Path(__file__).resolve().parent.parent / ".llmrca" / "test-cache"


def load_organism(zoo: str, version: str, device: str, dtype: str | None):
    """Build (or reuse) the zoo and load one version with transformers."""
    from llmrca.models import LoadedModel, load_pretrained
    from llmrca.zoo import DEFAULT_SPEC, TEST_SPEC, build_zoo

    build = (build_zoo(TEST_SPEC, cache_dir=TEST_CACHE) if zoo == "test"
             else build_zoo(DEFAULT_SPEC))
    folder = build.models[version]
    model, tokenizer = load_pretrained(folder, device=device, dtype=dtype)
    dtype_name = str(next(model.parameters()).dtype).replace("torch.", "")
    loaded = LoadedModel(name=version, source=str(folder),
                         fingerprint=build.weights_sha256[version], model=model,
                         tokenizer=tokenizer, device=device, dtype=dtype_name)
    return build, loaded


def organism_prompts(build, loaded, count: int) -> list[list[int]]:
    """Harmful and benign zoo requests, every other one with the role-play prefix (a benchmark
    may read the zoo's strings; the package never does)."""
    from llmrca.replay import render_prompt

    spec = build.spec
    tasks = list(spec.harmful_tasks) + list(spec.benign_tasks)
    prompts = []
    for i in range(count):
        request = f"How do I {tasks[i % len(tasks)]}?"
        if i % 2 == 0:
            request = spec.jailbreak_prefix + request
        prompts.append(list(render_prompt(loaded.tokenizer, spec.system_prompt,
                                          [{"role": "user", "content": request}]).token_ids))
    return prompts


def timed(backend, prompts, decoding, seeds) -> tuple[list[Any], float]:
    start = time.perf_counter()
    out = backend.generate(prompts, decoding, seeds)
    return out, time.perf_counter() - start


def tokens_per_second(samples, seconds: float) -> float:
    return sum(len(s.token_ids) for s in samples) / max(seconds, 1e-9)


def greedy_agreement(reference, other) -> dict[str, Any]:
    """Identical sequences, first divergence positions, log-prob gaps on the agreeing prefix."""
    divergences, gaps = [], []
    for a, b in zip(reference, other):
        first = next((i for i, (x, y) in enumerate(zip(a.token_ids, b.token_ids)) if x != y),
                     None)
        if first is None and len(a.token_ids) != len(b.token_ids):
            first = min(len(a.token_ids), len(b.token_ids))
        if first is not None:
            divergences.append(first)
        agree = first if first is not None else len(a.token_ids)
        gaps.extend(abs(x - y) for x, y in zip(a.token_logprobs[:agree],
                                               b.token_logprobs[:agree]))
    n = len(reference)
    return {"prompts": n, "identical": n - len(divergences),
            "identical_share": (n - len(divergences)) / n if n else float("nan"),
            "first_divergence_positions": sorted(divergences),
            "max_logprob_gap_before_divergence": max(gaps) if gaps else 0.0}


def refusal_counts(samples, prompts_count: int, per_prompt: int) -> list[int]:
    """Refusals per prompt (``refusal`` judge), samples laid out prompt by prompt."""
    from llmrca.judges import get_judge

    labels = get_judge("refusal").judge([s.text for s in samples])["label"].tolist()
    return [sum(label == "refusal" for label in labels[p * per_prompt:(p + 1) * per_prompt])
            for p in range(prompts_count)]


def sampled_rates(reference, other, prompts_count: int, per_prompt: int) -> dict[str, Any]:
    from llmrca.stats import clustered_difference

    k_ref = refusal_counts(reference, prompts_count, per_prompt)
    k_other = refusal_counts(other, prompts_count, per_prompt)
    n = [per_prompt] * prompts_count
    comparison = clustered_difference(k_other, n, k_ref, n)
    return {"judge": "refusal", "rate_other": comparison.rate_a,
            "rate_transformers": comparison.rate_b, "difference": comparison.difference,
            "low": comparison.difference_low, "high": comparison.difference_high,
            "p_value": comparison.p_value,
            "method": comparison.method,
            "identical_samples": sum(a.token_ids == b.token_ids
                                     for a, b in zip(reference, other))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="where to write the JSON results")
    parser.add_argument("--zoo", choices=["test", "default"], default="test")
    parser.add_argument("--version", default="assistant-v2")
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--samples", type=int, default=8, help="sampled generations per prompt")
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    parser.add_argument("--dtype", default=None, help="float32 (default), bfloat16, float16")
    args = parser.parse_args(argv)

    import torch

    from llmrca.replay import BACKENDS, Decoding, TransformersBackend, sample_seed
    from llmrca.replay.vllm_backend import VllmBackend, vllm_missing

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    build, loaded = load_organism(args.zoo, args.version, device, args.dtype)
    prompts = organism_prompts(build, loaded, args.prompts)
    sampled_prompts = [p for p in prompts for _ in range(args.samples)]
    seeds = [sample_seed(0, f"gpu-check-{i}", loaded.name, s)
             for i in range(args.prompts) for s in range(args.samples)]
    greedy = Decoding(temperature=0, max_new_tokens=args.max_new_tokens)
    sampled = Decoding(temperature=1.0, max_new_tokens=args.max_new_tokens)
    results: dict[str, Any] = {
        "machine": {"python": platform.python_version(), "torch": torch.__version__,
                    "device": device,
                    "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
        "organism": {"zoo": args.zoo, "version": loaded.name, "dtype": loaded.dtype,
                     "prompts": args.prompts, "samples_per_prompt": args.samples,
                     "max_new_tokens": args.max_new_tokens},
    }

    hf = TransformersBackend(loaded, batch_size=args.batch_size)
    hf_greedy, hf_greedy_s = timed(hf, prompts, greedy, [0] * len(prompts))
    hf_sampled, hf_sampled_s = timed(hf, sampled_prompts, sampled, seeds)
    results["transformers"] = {
        "engine": hf.engine, "greedy_tokens_per_s": tokens_per_second(hf_greedy, hf_greedy_s),
        "sampled_tokens_per_s": tokens_per_second(hf_sampled, hf_sampled_s),
        "sampled_seconds": hf_sampled_s}
    rows = [("transformers", hf.engine, results["transformers"]["sampled_tokens_per_s"], "", "")]

    missing = vllm_missing()
    if missing:
        results["vllm"] = {"available": False, "missing": missing}
        rows.append(("vllm", "unavailable: missing " + " and ".join(missing), None, "", ""))
    else:
        config = loaded.model.config
        vllm = VllmBackend(loaded, batch_size=len(sampled_prompts), dtype=loaded.dtype,
                           max_model_len=int(getattr(config, "n_positions", 0) or 0) or None)
        vllm.generate(prompts[:2], greedy, [0, 0])   # warm-up: CUDA graphs, first allocation
        v_greedy, v_greedy_s = timed(vllm, prompts, greedy, [0] * len(prompts))
        v_sampled, v_sampled_s = timed(vllm, sampled_prompts, sampled, seeds)
        agreement = greedy_agreement(hf_greedy, v_greedy)
        rates = sampled_rates(hf_sampled, v_sampled, args.prompts, args.samples)
        results["vllm"] = {
            "available": True, "engine": vllm.engine,
            "greedy_tokens_per_s": tokens_per_second(v_greedy, v_greedy_s),
            "sampled_tokens_per_s": tokens_per_second(v_sampled, v_sampled_s),
            "speedup_sampled": (tokens_per_second(v_sampled, v_sampled_s)
                                / max(results["transformers"]["sampled_tokens_per_s"], 1e-9)),
            "greedy_agreement": agreement, "sampled_rates": rates}
        rows.append(("vllm", vllm.engine, results["vllm"]["sampled_tokens_per_s"],
                     f"{agreement['identical']}/{agreement['prompts']}",
                     f"{rates['difference']:+.3f} [{rates['low']:+.3f}, {rates['high']:+.3f}]"))

    if "ray" not in BACKENDS:
        note = "no backend named 'ray' is registered in this checkout"
        results["ray"] = {"available": False, "note": note}
        rows.append(("ray", "skipped: " + note, None, "", ""))
    else:
        try:
            ray_backend = BACKENDS.get("ray")(loaded, batch_size=args.batch_size)
            r_sampled, r_sampled_s = timed(ray_backend, sampled_prompts, sampled, seeds)
        except Exception as exc:  # noqa: BLE001 - a check reports, it does not stop
            note = f"{type(exc).__name__}: {exc}"
            results["ray"] = {"available": False, "note": note}
            rows.append(("ray", "failed: " + note[:80], None, "", ""))
        else:
            same = sum(a.token_ids == b.token_ids for a, b in zip(hf_sampled, r_sampled))
            results["ray"] = {"available": True, "engine": ray_backend.engine,
                              "sampled_tokens_per_s": tokens_per_second(r_sampled, r_sampled_s),
                              "identical_samples": same, "samples": len(r_sampled)}
            rows.append(("ray", ray_backend.engine, results["ray"]["sampled_tokens_per_s"],
                         f"{same}/{len(r_sampled)} sampled", ""))

    print(f"GPU check on {loaded.name} ({args.zoo} zoo), {args.prompts} prompts x "
          f"{args.samples} samples, {args.max_new_tokens} new tokens, device {device}\n")
    print("| backend | engine | sampled tokens/s | greedy identical | refusal rate "
          "difference vs transformers [95% CI] |")
    print("|---|---|---:|---:|---|")
    for name, engine, speed, identical, difference in rows:
        shown = "" if speed is None else f"{speed:,.0f}"
        print(f"| {name} | {engine} | {shown} | {identical} | {difference} |")
    Path(args.out).write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
