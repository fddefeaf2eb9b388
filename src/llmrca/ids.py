"""Content ids: one hashing convention for every record an analysis caches in the store.

The convention
--------------
``content_id(*parts, digits=32)`` is the first ``digits`` hex digits of SHA-256 over the
*canonical JSON* of the parts: sorted keys, no whitespace, UTF-8 (:func:`canonical_json`). One
part is hashed as itself (``content_id({"a": 1})`` hashes ``{"a":1}``); several parts are hashed
as a JSON list (``content_id("x", 1)`` hashes ``["x",1]``). 32 hex digits (128 bits) is the
default for stored rows; ``digits=64`` gives the whole digest. :func:`content_int` is the same
hash as an integer (seeds).

The named functions below are the ids the store holds today. Each reproduces exactly the
construction that wrote the rows already on disk, so no store needs re-keying:

=====================  ============================================================  ======
id                     parts                                                          digits
=====================  ============================================================  ======
``prompt_id``          ``{text, token_ids}`` of a rendered prompt                     32
``sample_id``          ``{model, engine, prompt, decoding, seed}`` (seed None: greedy) 32
``score_id``           ``{model, engine, prompt, output}`` (teacher-forced tokens)    32
``run_id``             ``"run-"`` + ``{incident_id, seed, versions, parameters}``     24
``sample_seed``        ``[run_seed, interaction_id, version, sample_index]``          63 bits
``judgement_id``       ``[sample_id, judge, judge_config_hash]``, *legacy* JSON        32
=====================  ============================================================  ======

``judgement_id`` predates the convention: it hashes ``json.dumps`` with its default
separators (``", "``), not canonical JSON; :func:`judgement_id` keeps that so stored judgements
keep their ids. A judge's ``config_hash`` (16 digits, :mod:`llmrca.judges.base`) and interaction
ids (64 digits over ``\\x1f``-joined text, :mod:`llmrca.store.ingest_writes`) are older still
and live with their owners.

Caching ("compute unless a row with this key exists") is :func:`llmrca.store.cache.compute_missing`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

__all__ = [
    "canonical_json",
    "content_id",
    "content_int",
    "judgement_id",
    "prompt_id",
    "run_id",
    "sample_id",
    "sample_seed",
    "score_id",
]


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: the form that gets hashed."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _digest(parts: tuple[Any, ...]) -> bytes:
    value = parts[0] if len(parts) == 1 else list(parts)
    return hashlib.sha256(canonical_json(value).encode("utf-8")).digest()


def content_id(*parts: Any, digits: int = 32) -> str:
    """The first ``digits`` hex digits of SHA-256 over the canonical JSON of ``parts``.

    One part is hashed as itself, several as a JSON list of them.
    """
    if not parts:
        raise ValueError("content_id needs at least one part")
    if not 1 <= digits <= 64:
        raise ValueError(f"digits must be in 1..64; got {digits}")
    return _digest(parts).hex()[:digits]


def content_int(*parts: Any, bits: int = 63) -> int:
    """The same hash as :func:`content_id`, as a non-negative integer below ``2**bits``
    (the first 8 bytes, big-endian, masked)."""
    return int.from_bytes(_digest(parts)[:8], "big") & ((1 << bits) - 1)


def prompt_id(text: str, token_ids: Sequence[int]) -> str:
    """Identity of a rendered prompt: its text and the token ids it was encoded to."""
    return content_id({"text": text, "token_ids": list(token_ids)})


def sample_id(model_fingerprint: str, engine: str, prompt: str, decoding_key: dict[str, Any],
              seed: int | None) -> str:
    """A replay sample: model, engine, rendered prompt id, decoding key, seed (None: greedy)."""
    return content_id({"model": model_fingerprint, "engine": engine, "prompt": prompt,
                       "decoding": decoding_key, "seed": seed})


def score_id(model_fingerprint: str, engine: str, prompt: str, output_ids: Sequence[int]) -> str:
    """A teacher-forced score: model, engine, rendered prompt id and the output's tokens."""
    return content_id({"model": model_fingerprint, "engine": engine, "prompt": prompt,
                       "output": list(output_ids)})


def run_id(identity: dict[str, Any]) -> str:
    """A replay run: ``run-`` + 24 hex digits over what identifies it (incident, seed, versions
    with fingerprints and engines, parameters; see :meth:`llmrca.replay.ReplayConfig.identity`)."""
    return "run-" + content_id(identity, digits=24)


def sample_seed(run_seed: int, interaction_id: str, model_version: str, sample_index: int) -> int:
    """The seed of one replay sample (below ``2**63``)."""
    return content_int(int(run_seed), str(interaction_id), str(model_version), int(sample_index))


def judgement_id(sample: str, judge: str, judge_config_hash: str) -> str:
    """A judgement: 32 hex digits over ``[sample_id, judge, judge_config_hash]``.

    Legacy construction (``json.dumps`` default separators), kept so stored ids do not change.
    """
    blob = json.dumps([str(sample), str(judge), str(judge_config_hash)], ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:32]
