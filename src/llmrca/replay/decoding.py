"""Decoding parameters, per-sample seeds and content-addressed keys.

Everything here is pure Python (no torch) so that keys can be computed and checked cheaply.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from llmrca import ids
from llmrca.errors import InvalidArgumentError

#: Version of the sampling algorithm (:mod:`llmrca.replay.backends`). It is part of every sample
#: key: a change to how tokens are drawn must not be served stale samples from the cache.
SAMPLER_VERSION = 1


canonical_json = ids.canonical_json


def content_hash(value: Any, length: int = 32) -> str:
    """A hex SHA-256 of ``value``'s canonical JSON, cut to ``length`` characters
    (:func:`llmrca.ids.content_id` of one part)."""
    return ids.content_id(value, digits=length)


@dataclass(frozen=True)
class Decoding:
    """How tokens are chosen.

    Parameters
    ----------
    temperature : float
        0 means greedy (argmax); otherwise logits are divided by it before sampling.
    top_p : float
        Nucleus sampling: keep the smallest set of most likely tokens whose mass reaches ``top_p``.
        Ignored when greedy.
    max_new_tokens : int
        Generation stops after this many tokens, or at an end-of-sequence token.
    """

    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 32

    def __post_init__(self):
        if not (isinstance(self.temperature, (int, float)) and math.isfinite(self.temperature)
                and self.temperature >= 0):
            raise InvalidArgumentError(f"temperature must be a finite number >= 0; got {self.temperature!r}")
        if not (isinstance(self.top_p, (int, float)) and 0 < self.top_p <= 1):
            raise InvalidArgumentError(f"top_p must be in (0, 1]; got {self.top_p!r}")
        if not (isinstance(self.max_new_tokens, int) and self.max_new_tokens >= 1):
            raise InvalidArgumentError(f"max_new_tokens must be an integer >= 1; got {self.max_new_tokens!r}")

    @property
    def greedy(self) -> bool:
        """True when tokens are chosen by argmax (temperature 0)."""
        return self.temperature == 0

    def key(self) -> dict[str, Any]:
        """The parameters that decide the output, normalised (greedy ignores ``top_p``)."""
        return {"temperature": float(self.temperature),
                "top_p": 1.0 if self.greedy else float(self.top_p),
                "max_new_tokens": int(self.max_new_tokens),
                "sampler": SAMPLER_VERSION}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sample_seed(run_seed: int, interaction_id: str, model_version: str, sample_index: int) -> int:
    """The seed of one sample: a hash of (run seed, interaction, version, sample index).

    The first 8 bytes of SHA-256 over the canonical JSON of the four values, as an integer below
    2**63. It does not depend on the prompt variant, so the variants of one interaction share
    their random numbers sample by sample (common random numbers make paired McNemar tests
    sharper); it does depend on the version, so samples of two versions are independent (as
    Fisher's test between versions assumes).
    """
    return ids.sample_seed(run_seed, interaction_id, model_version, sample_index)


def prompt_hash(text: str, token_ids: Sequence[int]) -> str:
    """Identity of a rendered prompt: its text and the token ids it was encoded to."""
    return ids.prompt_id(text, token_ids)


def sample_key(model_fingerprint: str, engine: str, prompt_id: str, decoding: Decoding,
               seed: int) -> str:
    """The content-addressed id of one sample.

    A hash of the model fingerprint, the engine that computes (backend, device type, dtype: the
    numbers differ between them), the rendered prompt (``prompt_id`` from :func:`prompt_hash`),
    the decoding parameters and the seed. Greedy decoding does not use the seed, so it is left out
    and all greedy samples of one prompt share one id (and one generation).
    """
    return ids.sample_id(model_fingerprint, engine, prompt_id, decoding.key(),
                         None if decoding.greedy else int(seed))
