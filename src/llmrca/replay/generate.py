"""Generation: produce the planned samples the store lacks, chunk by chunk, through the cache."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from llmrca.replay.decoding import Decoding
from llmrca.replay.plan import PlannedSample, VersionHandle
from llmrca.store.cache import CacheReport, compute_missing
from llmrca.store.replay import SAMPLES

__all__ = ["generate_missing"]


def generate_missing(store, plan: list[PlannedSample], handles: list[VersionHandle],
                     decoding: Decoding, run_id: str, *, existing: set[str],
                     chunk_size: int, on_batch: Callable[[int], None] | None = None
                     ) -> CacheReport:
    """Generate every planned sample whose key is not in ``existing``, version by version,
    longest prompts first, ``chunk_size`` samples per store transaction (a killed run keeps
    every finished chunk). Each distinct key is generated once."""
    items: dict[str, PlannedSample] = {}
    for p in sorted(plan, key=lambda p: (p.model_index, -len(p.prompt.token_ids), p.sample_id)):
        items.setdefault(p.sample_id, p)

    def compute(part: list[PlannedSample]) -> list[dict[str, Any]]:
        handle = handles[part[0].model_index]
        back = handle.backend
        outs = back.generate([p.prompt.token_ids for p in part], decoding,
                             [p.seed for p in part], on_batch=on_batch)
        return [{"sample_id": p.sample_id, "model_version": handle.name,
                 "model_fingerprint": handle.fingerprint, "engine": back.engine,
                 "prompt_hash": p.prompt.prompt_id, "prompt_text": p.prompt.text,
                 "prompt_tokens": len(p.prompt.token_ids), "decoding": decoding.key(),
                 "seed": 0 if decoding.greedy else p.seed, "output": g.text,
                 "token_ids": list(g.token_ids), "token_logprobs": list(g.token_logprobs),
                 "total_logprob": float(sum(g.token_logprobs)),
                 "finish_reason": g.finish_reason, "warnings": list(p.prompt.warnings),
                 "run_id": run_id} for p, g in zip(part, outs)]

    return compute_missing(store, SAMPLES, items, compute, chunk_size=chunk_size,
                           group=lambda p: p.model_index, existing=existing)
