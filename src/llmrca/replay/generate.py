"""Generation: produce the planned samples the store lacks, chunk by chunk, through the cache."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from llmrca.replay.decoding import Decoding
from llmrca.replay.plan import PlannedSample, VersionHandle
from llmrca.store.cache import CacheReport, stream_missing
from llmrca.store.replay import SAMPLES

__all__ = ["generate_missing"]


def generate_missing(store, plan: list[PlannedSample], handles: list[VersionHandle],
                     decoding: Decoding, run_id: str, *, existing: set[str],
                     chunk_size: int, on_batch: Callable[[int], None] | None = None
                     ) -> CacheReport:
    """Generate every planned sample whose key is not in ``existing``, version by version,
    longest prompts first, and write them ``chunk_size`` samples per store transaction as the
    backend delivers them (a killed run keeps every finished chunk). Each distinct key is
    generated once. A backend that schedules a whole version's samples at once (Ray) streams
    them back through :meth:`~llmrca.replay.backends.ReplayBackend.generate_chunks`."""
    items: dict[str, PlannedSample] = {}
    for p in sorted(plan, key=lambda p: (p.model_index, -len(p.prompt.token_ids), p.sample_id)):
        items.setdefault(p.sample_id, p)

    def compute_chunks(members: list[PlannedSample]) -> Iterator[list[dict[str, Any]]]:
        handle = handles[members[0].model_index]
        back = handle.backend
        for chunk in back.generate_chunks([p.prompt.token_ids for p in members], decoding,
                                          [p.seed for p in members], chunk_size=chunk_size,
                                          on_batch=on_batch):
            yield [_row(members[i], g, handle, back.engine) for i, g in chunk]

    def _row(p: PlannedSample, g, handle: VersionHandle, engine: str) -> dict[str, Any]:
        return {"sample_id": p.sample_id, "model_version": handle.name,
                "model_fingerprint": handle.fingerprint, "engine": engine,
                "prompt_hash": p.prompt.prompt_id, "prompt_text": p.prompt.text,
                "prompt_tokens": len(p.prompt.token_ids), "decoding": decoding.key(),
                "seed": 0 if decoding.greedy else p.seed, "output": g.text,
                "token_ids": list(g.token_ids), "token_logprobs": list(g.token_logprobs),
                "total_logprob": float(sum(g.token_logprobs)),
                "finish_reason": g.finish_reason, "warnings": list(p.prompt.warnings),
                "run_id": run_id}

    return stream_missing(store, SAMPLES, items, compute_chunks,
                          group=lambda p: p.model_index, existing=existing)
