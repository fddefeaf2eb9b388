"""Replay backends: the one place that runs a model to generate.

A backend implements one hook, :meth:`ReplayBackend.generate_batch`; the base class splits work
into batches, adapts the batch size to memory (halving on out-of-memory) and counts forward passes.
The in-process transformers backend is registered as ``transformers``; a vLLM or Ray backend
registers itself in :data:`BACKENDS` and nothing else changes. Padding, positions, the forward
pass and the key helpers live in :mod:`llmrca.models.forward` and are re-exported here.

Sampling is done here rather than by ``model.generate``: each row draws its tokens from its own
``torch.Generator`` seeded with the sample's seed, one uniform number per step, so a sample's tokens
do not depend on which other prompts share its batch. Any one sample can be regenerated alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from llmrca.errors import InvalidArgumentError
from llmrca.models.forward import (
    cache_keyword,
    causal_forward,
    check_model_clean,
    engine_of,
    left_pad,
    model_fingerprint,
    position_ids_for,
)
from llmrca.registry import Registry
from llmrca.replay.decoding import Decoding

__all__ = [
    "BACKENDS",
    "GeneratedSample",
    "ReplayBackend",
    "TransformersBackend",
    "causal_forward",
    "engine_of",
    "left_pad",
    "model_fingerprint",
    "position_ids_for",
]


@dataclass(frozen=True)
class GeneratedSample:
    """One generated continuation.

    Attributes
    ----------
    token_ids : tuple of int
        Generated tokens, the end-of-sequence token included when generation stopped on it.
    text : str
        ``token_ids`` decoded, special tokens skipped.
    token_logprobs : tuple of float
        Log-probability of each generated token under the model's unmodified distribution
        (log-softmax of the logits at temperature 1, no top-p), whatever the decoding parameters.
    finish_reason : str
        ``eos`` (stopped on an end-of-sequence token) or ``length`` (hit ``max_new_tokens``).
    """

    token_ids: tuple[int, ...]
    text: str
    token_logprobs: tuple[float, ...]
    finish_reason: str = "length"


def _is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    import torch

    oom = getattr(torch.cuda, "OutOfMemoryError", None)
    if oom is not None and isinstance(exc, oom):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


class ReplayBackend:
    """Base class of replay backends: batching, memory adaptation, forward-pass counting.

    Subclasses implement :meth:`generate_batch` (and may override :meth:`max_batch_size` and
    :attr:`engine`).

    Parameters
    ----------
    loaded_model
        A :class:`llmrca.models.LoadedModel` (``name``, ``fingerprint``, ``model``, ``tokenizer``,
        ``device``).
    batch_size : int
        Largest batch tried; halved on out-of-memory and kept halved for the rest of the run.

    Attributes
    ----------
    forward_passes : int
        Model forward calls made so far (a prefill and each decode step count one each).
    batch_size : int
        The current (possibly reduced) batch size.
    """

    name = "base"

    def __init__(self, loaded_model, *, batch_size: int = 16):
        if int(batch_size) < 1:
            raise InvalidArgumentError(f"batch_size must be >= 1; got {batch_size}")
        self.loaded_model = loaded_model
        self.batch_size = int(batch_size)
        self.forward_passes = 0

    @property
    def engine(self) -> str:
        """What computes the numbers (backend, device type, dtype); part of every sample key."""
        return self.name

    def max_batch_size(self, prompt_tokens: int, decoding: Decoding) -> int:
        """Largest batch worth trying for prompts of this length (default: :attr:`batch_size`)."""
        return self.batch_size

    def generate_batch(self, prompts_token_ids: Sequence[Sequence[int]], decoding: Decoding,
                       seeds: Sequence[int]) -> list[GeneratedSample]:
        """Generate one continuation per prompt, row ``i`` seeded with ``seeds[i]`` (the hook)."""
        raise NotImplementedError

    def generate(self, prompts_token_ids: Sequence[Sequence[int]], decoding: Decoding,
                 seeds: Sequence[int], *,
                 on_batch: Callable[[int], None] | None = None) -> list[GeneratedSample]:
        """Generate for any number of prompts, in batches, halving the batch on out-of-memory.

        ``on_batch(n)`` is called after each batch with the number of samples it produced.
        """
        if len(prompts_token_ids) != len(seeds):
            raise InvalidArgumentError("one seed per prompt is needed")
        results: list[GeneratedSample] = []
        start = 0
        while start < len(prompts_token_ids):
            longest = max(len(p) for p in prompts_token_ids[start:start + self.batch_size])
            size = max(1, min(self.batch_size, self.max_batch_size(longest, decoding)))
            batch = prompts_token_ids[start:start + size]
            try:
                out = self.generate_batch(batch, decoding, seeds[start:start + size])
            except BaseException as exc:
                if not _is_out_of_memory(exc) or size == 1:
                    raise
                self._release_memory()
                self.batch_size = max(1, size // 2)
                continue
            results.extend(out)
            start += len(batch)
            if on_batch is not None:
                on_batch(len(out))
        return results

    def generate_chunks(self, prompts_token_ids: Sequence[Sequence[int]], decoding: Decoding,
                        seeds: Sequence[int], *, chunk_size: int,
                        on_batch: Callable[[int], None] | None = None
                        ) -> Iterator[list[tuple[int, GeneratedSample]]]:
        """Generate for all prompts and yield the results as they finish, a chunk at a time.

        Each chunk is a list of ``(position in prompts_token_ids, sample)``; chunks may come in
        any order. The default runs :meth:`generate` on ``chunk_size`` prompts at a time, in
        order; a backend that schedules the whole list at once (Ray) overrides it.
        """
        if len(prompts_token_ids) != len(seeds):
            raise InvalidArgumentError("one seed per prompt is needed")
        size = max(1, int(chunk_size))
        for start in range(0, len(prompts_token_ids), size):
            out = self.generate(prompts_token_ids[start:start + size], decoding,
                                seeds[start:start + size], on_batch=on_batch)
            yield list(enumerate(out, start))

    @classmethod
    def light_engine(cls, device_type: str, dtype: str,
                     backend_options: dict | None = None) -> str | None:
        """The :attr:`engine` this backend would report for a model on ``device_type`` in
        ``dtype``, computed without loading it (so a fully cached replay loads nothing); ``None``
        when it cannot be known without the model (the model is then loaded)."""
        return None

    def _release_memory(self) -> None:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()


BACKENDS: Registry[type[ReplayBackend]] = Registry("replay backend")


def _stop_ids(tokenizer, model) -> set[int]:
    ids: set[int] = set()
    for value in (getattr(tokenizer, "eos_token_id", None),
                  getattr(getattr(model, "generation_config", None), "eos_token_id", None)):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(int(v) for v in value)
    return ids


def _draw(logits_row, decoding: Decoding, generator) -> int:
    """Choose the next token of one row: argmax, or inverse-CDF sampling with one uniform draw.

    The cumulative sum runs in vocabulary order (not sorted by probability) so that float noise
    between a batched and a lone forward pass cannot reorder near-tied tokens and change the pick.
    """
    import torch

    if decoding.greedy:
        return int(torch.argmax(logits_row))
    probs = torch.softmax(logits_row.double().cpu() / decoding.temperature, dim=-1)
    if decoding.top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True, stable=True)
        before = torch.cumsum(sorted_probs, 0) - sorted_probs
        keep = torch.zeros_like(probs, dtype=torch.bool)
        keep[order[before < decoding.top_p]] = True
        probs = torch.where(keep, probs, torch.zeros_like(probs))
    cdf = torch.cumsum(probs, 0)
    u = torch.rand((), generator=generator, dtype=torch.float64) * cdf[-1]
    index = int(torch.searchsorted(cdf, u.reshape(1), right=True)[0])
    return min(index, probs.numel() - 1)


@BACKENDS.register("transformers")
class TransformersBackend(ReplayBackend):
    """In-process generation with a Hugging Face causal LM, on the model's device.

    Prompts are left-padded; positions come from the attention mask; the KV cache carries the
    decode loop. Each row stops at its own end-of-sequence token.

    Parameters
    ----------
    memory_budget_bytes : int, optional
        Memory the batch may use. On CPU the batch size is capped by
        ``budget / bytes_per_row(prompt length, vocab size, layers, width)``. Default: 1 GiB on
        CPU, half the free memory on CUDA.
    intervention : str, optional
        Generate on purpose under the llmrca hooks active on the model (a causal check: ablate
        or add a direction, then sample). A non-empty id of the intervention (a content id of
        what it does) is required: it is appended to :attr:`engine`, so every key built from
        the engine (sample ids) differs from the clean model's and an intervened sample can
        never be mistaken for -- or stored as -- a clean one. Without it (the default),
        generating while an llmrca hook is on raises :class:`~llmrca.errors.HookError`.
    """

    name = "transformers"

    def __init__(self, loaded_model, *, batch_size: int = 16,
                 memory_budget_bytes: int | None = None, intervention: str | None = None):
        super().__init__(loaded_model, batch_size=batch_size)
        if intervention is not None and not str(intervention).strip():
            raise InvalidArgumentError("intervention must be a non-empty id (or None)")
        self.intervention = None if intervention is None else str(intervention)
        import torch

        self.model = loaded_model.model
        self.model.eval()
        self.tokenizer = loaded_model.tokenizer
        device = getattr(loaded_model, "device", None)
        self.device = torch.device(device) if device else next(self.model.parameters()).device
        self.dtype = next(self.model.parameters()).dtype
        self.memory_budget_bytes = memory_budget_bytes
        self.stop_ids = _stop_ids(self.tokenizer, self.model)
        pad = getattr(self.tokenizer, "pad_token_id", None)
        self.pad_id = pad if pad is not None else (min(self.stop_ids) if self.stop_ids else 0)
        self._cache_kwarg = cache_keyword(self.model)

    @classmethod
    def light_engine(cls, device_type: str, dtype: str,
                     backend_options: dict | None = None) -> str | None:
        if (backend_options or {}).get("intervention") is not None:
            return None
        return f"{cls.name}:{device_type}:{dtype}"

    @property
    def engine(self) -> str:
        base = engine_of(self.loaded_model, self.name)
        return base if self.intervention is None else f"{base}+intervention:{self.intervention}"

    def _budget(self) -> int:
        if self.memory_budget_bytes is not None:
            return int(self.memory_budget_bytes)
        import torch

        if self.device.type == "cuda":
            free, _total = torch.cuda.mem_get_info(self.device)
            return free // 2
        return 1 << 30

    def max_batch_size(self, prompt_tokens: int, decoding: Decoding) -> int:
        config = self.model.config
        vocab = int(getattr(config, "vocab_size", 50_000))
        layers = int(getattr(config, "n_layer", getattr(config, "num_hidden_layers", 12)))
        width = int(getattr(config, "n_embd", getattr(config, "hidden_size", 768)))
        heads = int(getattr(config, "n_head", getattr(config, "num_attention_heads", 12)))
        length = prompt_tokens + decoding.max_new_tokens
        item = max(1, next(self.model.parameters()).element_size())
        # Prefill logits (prompt length x vocab, in case the model ignores logits_to_keep), the KV
        # cache, attention scores and a few activations of width n_embd per position.
        per_row = item * (prompt_tokens * vocab + 2 * layers * length * width
                          + heads * prompt_tokens * length + 8 * prompt_tokens * width)
        return max(1, min(self.batch_size, self._budget() // max(per_row, 1)))

    def _forward(self, input_ids, attention_mask, position_ids, cache):
        self.forward_passes += 1
        return causal_forward(self.model, input_ids, attention_mask, position_ids, cache=cache,
                              use_cache=True, logits_to_keep=1, cache_kwarg=self._cache_kwarg)

    def generate_batch(self, prompts_token_ids: Sequence[Sequence[int]], decoding: Decoding,
                       seeds: Sequence[int]) -> list[GeneratedSample]:
        import torch

        rows = len(prompts_token_ids)
        if any(len(p) == 0 for p in prompts_token_ids):
            raise InvalidArgumentError("cannot generate from an empty prompt")
        # The model is shared through the loader's cache: a patching hook left on it would make
        # every later sample a patched one, stored under the unpatched model's key.
        # An intervened backend (a causal check) generates under its hooks on purpose; its
        # engine, and so every key, names the intervention.
        if self.intervention is None:
            check_model_clean(self.model)
        generators = [torch.Generator(device="cpu").manual_seed(int(s)) for s in seeds]
        tokens: list[list[int]] = [[] for _ in range(rows)]
        logprobs: list[list[float]] = [[] for _ in range(rows)]
        finish = ["length"] * rows
        done = [False] * rows
        with torch.inference_mode():
            input_ids, mask = left_pad(prompts_token_ids, self.pad_id, self.device)
            positions = position_ids_for(mask)
            logits, cache = self._forward(input_ids, mask, positions, None)
            last_position = positions[:, -1]
            for step in range(decoding.max_new_tokens):
                step_logits = logits[:, -1, :].float()
                # Stored log-probs: the unmodified distribution (temperature 1, no top-p).
                step_logprobs = torch.log_softmax(step_logits, dim=-1)
                next_ids = []
                for row in range(rows):
                    if done[row]:
                        next_ids.append(self.pad_id)
                        continue
                    token = _draw(step_logits[row], decoding, generators[row])
                    tokens[row].append(token)
                    logprobs[row].append(float(step_logprobs[row, token]))
                    if token in self.stop_ids:
                        done[row] = True
                        finish[row] = "eos"
                    next_ids.append(token)
                if all(done) or step == decoding.max_new_tokens - 1:
                    break
                feed = torch.tensor(next_ids, dtype=torch.long, device=self.device)[:, None]
                mask = torch.cat([mask, torch.ones((rows, 1), dtype=mask.dtype,
                                                   device=self.device)], dim=1)
                last_position = last_position + 1
                logits, cache = self._forward(feed, mask, last_position[:, None], cache)
        return [GeneratedSample(tuple(tokens[r]),
                                self.tokenizer.decode(tokens[r], skip_special_tokens=True),
                                tuple(logprobs[r]), finish[r]) for r in range(rows)]


# The other built-in backends register themselves on import (each imports its engine lazily).
import llmrca.replay.vllm_backend  # noqa: F401
