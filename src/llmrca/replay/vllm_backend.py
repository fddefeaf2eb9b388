"""The vLLM replay backend (``--backend vllm``): offline ``vllm.LLM.generate`` on a CUDA GPU.

vLLM is an optional extra that pins its own torch and CUDA builds, so it lives in its own virtual
environment (``docs/scale.md``); it is imported only when the backend is built. On a machine
without the package or without a CUDA GPU, :meth:`VllmBackend.check_available` raises
:class:`~llmrca.errors.BackendUnavailableError` naming what is missing and how to install it --
before any weights load.

Each planned sample is one request with its own ``SamplingParams(seed=...)``, so a sample does
not depend on the other requests of its batch within vLLM. The numbers are vLLM's, not the
transformers backend's: its kernels are not bit-identical, and its sampler draws differently, so
its samples are keyed by their own engine (``vllm-<version>:cuda:<dtype>``) and never served for a
transformers run. How far greedy outputs agree with the transformers backend is measured by
``benchmarks/gpu_check.py``, not assumed.

Prompts go in as token ids and the tokenizer is not started in vLLM (``skip_tokenizer_init``):
the text of a sample is decoded by the loaded model's own tokenizer, as the transformers backend
does, so judges read the same text for the same tokens.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from typing import Any

from llmrca.errors import BackendUnavailableError, LlmrcaError
from llmrca.replay.backends import BACKENDS, GeneratedSample, ReplayBackend, _stop_ids
from llmrca.replay.decoding import Decoding

__all__ = [
    "VLLM_INSTALL",
    "VllmBackend",
    "VllmOutputError",
    "samples_from_outputs",
    "sampling_arguments",
    "vllm_missing",
]

#: How to get a working vLLM: its own venv, where vLLM's pins choose torch and CUDA.
VLLM_INSTALL = ("Install it on a machine with a CUDA GPU, in a fresh virtual environment where "
                "vLLM chooses its own torch build: `python -m venv .venv-gpu && "
                ".venv-gpu/bin/pip install 'llmrca[vllm]'` (never into the CPU venv; see "
                "docs/scale.md).")


class VllmOutputError(LlmrcaError, RuntimeError):
    """vLLM returned an output that cannot be stored as a sample (named by its request index).

    Attributes
    ----------
    request : int
        Position of the request in the batch.
    reason : str
        What was wrong.
    """

    def __init__(self, request: int, reason: str):
        self.request = request
        self.reason = reason
        super().__init__(f"vLLM output of request {request}: {reason}")


def _vllm_installed() -> bool:
    return importlib.util.find_spec("vllm") is not None


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency of llmrca
        return False
    return bool(torch.cuda.is_available())


def vllm_missing() -> list[str]:
    """What this machine lacks to run vLLM: ``[]``, or phrases naming the package and/or GPU."""
    missing = []
    if not _vllm_installed():
        missing.append("the Python package vllm")
    if not _cuda_available():
        missing.append("a CUDA GPU (torch.cuda.is_available() is False)")
    return missing


def sampling_arguments(decoding: Decoding, seed: int, stop_ids: Sequence[int]) -> dict[str, Any]:
    """Keyword arguments of ``vllm.SamplingParams`` for one sample.

    Greedy decoding is ``temperature=0`` without a seed (vLLM ignores it there). ``logprobs=1``
    asks for the chosen token's log-probability beside the most likely one's. Stopping is on
    the same token ids as the transformers backend (tokenizer and generation-config EOS).
    """
    arguments: dict[str, Any] = {
        "n": 1,
        "max_tokens": int(decoding.max_new_tokens),
        "temperature": 0.0 if decoding.greedy else float(decoding.temperature),
        "top_p": 1.0 if decoding.greedy else float(decoding.top_p),
        "logprobs": 1,
        "stop_token_ids": sorted(int(i) for i in stop_ids),
        "ignore_eos": False,
        "detokenize": False,
    }
    if not decoding.greedy:
        arguments["seed"] = int(seed)
    return arguments


def _logprob_of(entry: Any, token: int) -> float:
    """The log-probability of ``token`` in one position's ``{token id: Logprob}`` mapping."""
    value = entry[token]
    return float(getattr(value, "logprob", value))


def samples_from_outputs(outputs: Sequence[Any], prompts_token_ids: Sequence[Sequence[int]],
                         stop_ids: Sequence[int] | set[int],
                         decode: Callable[[list[int]], str]) -> list[GeneratedSample]:
    """Turn vLLM ``RequestOutput`` objects into :class:`GeneratedSample`, one per prompt, in order.

    Reads ``outputs[i].prompt_token_ids`` (checked against the request, when present) and, from
    ``outputs[i].outputs[0]`` (a ``CompletionOutput``): ``token_ids``, ``logprobs`` (one
    ``{token id: Logprob}`` per generated token) and ``finish_reason`` (``length``, or ``stop``
    on one of ``stop_ids``, which ends ``token_ids`` and becomes ``eos``). ``decode`` turns token
    ids into the sample's text.

    Raises
    ------
    VllmOutputError
        A missing or reordered output, no log-probabilities, or a stop that is not a stop token.
    """
    stops = {int(i) for i in stop_ids}
    if len(outputs) != len(prompts_token_ids):
        raise VllmOutputError(len(outputs), f"{len(outputs)} outputs for "
                                            f"{len(prompts_token_ids)} requests")
    samples = []
    for index, (request, prompt) in enumerate(zip(outputs, prompts_token_ids)):
        sent = getattr(request, "prompt_token_ids", None)
        if sent is not None and [int(t) for t in sent] != [int(t) for t in prompt]:
            raise VllmOutputError(index, "its prompt tokens are not the request's (outputs "
                                         "out of order)")
        completions = list(getattr(request, "outputs", None) or [])
        if len(completions) != 1:
            raise VllmOutputError(index, f"expected one completion, got {len(completions)}")
        completion = completions[0]
        tokens = [int(t) for t in completion.token_ids]
        entries = completion.logprobs
        if entries is None or len(entries) != len(tokens):
            raise VllmOutputError(index, "no log-probability for each generated token "
                                         "(SamplingParams(logprobs=1) was not honoured)")
        logprobs = tuple(_logprob_of(entries[i], token) for i, token in enumerate(tokens))
        reason = completion.finish_reason
        if reason == "length":
            finish = "length"
        elif reason == "stop" and tokens and tokens[-1] in stops:
            finish = "eos"
        else:
            raise VllmOutputError(index, f"finish_reason {reason!r} (stop_reason "
                                         f"{getattr(completion, 'stop_reason', None)!r}) after "
                                         f"{len(tokens)} tokens: only 'length', or 'stop' on one "
                                         f"of the stop tokens {sorted(stops)}, can be stored")
        samples.append(GeneratedSample(tuple(tokens), decode(tokens), logprobs, finish))
    return samples


def _vllm_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("vllm")
    except PackageNotFoundError:
        return "unknown"


@BACKENDS.register("vllm")
class VllmBackend(ReplayBackend):
    """Generation with vLLM's offline engine on a CUDA GPU (one ``LLM`` per loaded version).

    Parameters
    ----------
    loaded_model
        A :class:`llmrca.models.LoadedModel`; vLLM loads the weights again from its ``source``
        (a local folder or hub id) and the tokenizer of ``loaded_model`` decodes.
    batch_size : int
        Requests handed to one ``LLM.generate`` call (vLLM batches them itself; the store is
        written between calls).
    dtype : str, optional
        vLLM's dtype; default the loaded model's, so that both backends compute alike.
    gpu_memory_utilization : float
        Share of the GPU memory vLLM may take (weights and KV cache).
    llm : vllm.LLM, optional
        An engine already built (to share one between runs); its model must be ``loaded_model``'s.
    sampling_params : callable, optional
        The ``SamplingParams`` class (default ``vllm.SamplingParams``).
    **llm_options
        Passed to ``vllm.LLM`` (``tensor_parallel_size``, ``max_model_len``, ``enforce_eager``...).

    Notes
    -----
    vLLM schedules its own forward passes, so :attr:`forward_passes` stays 0 for this backend.
    """

    name = "vllm"

    @classmethod
    def check_available(cls) -> None:
        """Raise :class:`BackendUnavailableError` unless vllm is installed and a CUDA GPU seen."""
        missing = vllm_missing()
        if missing:
            raise BackendUnavailableError(cls.name, missing=missing, install=VLLM_INSTALL)

    def __init__(self, loaded_model, *, batch_size: int = 256, dtype: str | None = None,
                 gpu_memory_utilization: float = 0.5, llm: Any = None,
                 sampling_params: Any = None, **llm_options: Any):
        super().__init__(loaded_model, batch_size=batch_size)
        self.tokenizer = loaded_model.tokenizer
        self.stop_ids = sorted(_stop_ids(self.tokenizer, getattr(loaded_model, "model", None)))
        self.dtype = str(dtype or getattr(loaded_model, "dtype", None) or "auto")
        if llm is None:
            self.check_available()
            import vllm

            llm = vllm.LLM(model=str(loaded_model.source), dtype=self.dtype,
                           skip_tokenizer_init=True, seed=0,
                           gpu_memory_utilization=float(gpu_memory_utilization), **llm_options)
            sampling_params = sampling_params or vllm.SamplingParams
        elif sampling_params is None:
            from vllm import SamplingParams

            sampling_params = SamplingParams
        self.llm = llm
        self.sampling_params = sampling_params
        self.version = _vllm_version()

    @property
    def engine(self) -> str:
        """``vllm-<version>:cuda:<dtype>``: vLLM's numbers are keyed apart from transformers'."""
        return f"vllm-{self.version}:cuda:{self.dtype}"

    def _decode(self, tokens: list[int]) -> str:
        return str(self.tokenizer.decode(tokens, skip_special_tokens=True))

    def generate_batch(self, prompts_token_ids: Sequence[Sequence[int]], decoding: Decoding,
                       seeds: Sequence[int]) -> list[GeneratedSample]:
        if any(len(p) == 0 for p in prompts_token_ids):
            from llmrca.errors import InvalidArgumentError

            raise InvalidArgumentError("cannot generate from an empty prompt")
        params = [self.sampling_params(**sampling_arguments(decoding, seed, self.stop_ids))
                  for seed in seeds]
        requests = [{"prompt_token_ids": [int(t) for t in p]} for p in prompts_token_ids]
        outputs = self.llm.generate(requests, sampling_params=params, use_tqdm=False)
        return samples_from_outputs(outputs, prompts_token_ids, self.stop_ids, self._decode)
