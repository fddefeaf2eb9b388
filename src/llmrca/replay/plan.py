"""Planning a replay: resolve versions (without loading weights when possible), render every
prompt, and list every sample with its seed and content key before anything is generated."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pandas as pd

from llmrca.errors import InvalidArgumentError
from llmrca.replay.config import ReplayConfig, max_planned_samples
from llmrca.replay.decoding import sample_key, sample_seed
from llmrca.replay.prompts import RenderedPrompt, render_prompt

__all__ = ["PlannedSample", "VersionHandle", "check_plan_size", "plan_samples",
           "resolve_versions"]


@dataclass
class VersionHandle:
    """A version as replay needs it: identity for keys, a tokenizer for prompts, and the
    model only once something must run.

    Attributes
    ----------
    name, fingerprint, engine, source : str
        ``fingerprint`` is :func:`~llmrca.replay.backends.model_fingerprint`; ``engine``
        ``<backend>:<device type>:<dtype>``.
    tokenizer
        The real tokenizer, or a :class:`~llmrca.replay.tokenizer.LightTokenizer`.
    context_window : int or None
    light : bool
        True when the weights are not loaded (resolved from the store and the model folder).
    loaded, backend
        The :class:`~llmrca.models.LoadedModel` and its replay backend, once loaded.
    """

    name: str
    fingerprint: str
    engine: str
    source: str
    tokenizer: Any
    context_window: int | None
    light: bool = False
    loaded: Any = None
    backend: Any = None

    def info(self) -> dict[str, Any]:
        return {"name": self.name, "fingerprint": self.fingerprint, "engine": self.engine,
                "source": self.source}


def _device_type(device: Any) -> str:
    """The device type a load would pick, without importing torch: the given device's type,
    else ``cuda`` when an NVIDIA driver is present and not hidden, else ``cpu``. Only used to
    look up cached samples; a load checks it against torch and re-plans if it differs."""
    if device is not None:
        return str(device).split(":")[0]
    hidden = os.environ.get("CUDA_VISIBLE_DEVICES")
    if Path("/proc/driver/nvidia/version").exists() and hidden not in ("", "-1"):
        return "cuda"
    return "cpu"


def _light_handle(store, name: str, device: Any, dtype: Any, backend: str,
                  backend_options: dict | None = None) -> VersionHandle | None:
    from llmrca.models.loading import resolve_dtype
    from llmrca.replay.tokenizer import light_context_window, light_tokenizer
    from llmrca.store.model_registry import get_version

    version = get_version(store, name)
    if not version.fingerprint or not version.is_local or not Path(version.source).is_dir():
        return None
    tokenizer = light_tokenizer(version.source)
    if tokenizer is None:
        return None
    try:
        dtype_name = resolve_dtype(dtype)
    except Exception:  # noqa: BLE001 - the real load reports a bad dtype properly
        return None
    engine = backend_class(backend).light_engine(_device_type(device), dtype_name,
                                                 backend_options)
    if engine is None:
        return None
    return VersionHandle(name=name, fingerprint=str(version.fingerprint),
                         engine=engine,
                         source=str(version.source), tokenizer=tokenizer,
                         context_window=light_context_window(version.source), light=True)


def _loaded_handle(loaded: Any, backend: str, batch_size: int,
                   backend_options: dict | None) -> VersionHandle:
    from llmrca.replay.backends import BACKENDS, model_fingerprint
    from llmrca.replay.prompts import context_window

    back = BACKENDS.get(backend)(loaded, batch_size=batch_size, **(backend_options or {}))
    return VersionHandle(name=str(loaded.name), fingerprint=model_fingerprint(loaded),
                         engine=back.engine, source=str(getattr(loaded, "source", "")),
                         tokenizer=loaded.tokenizer, context_window=context_window(loaded.model),
                         light=False, loaded=loaded, backend=back)


def resolve_versions(store, versions: Sequence[Any], *, backend: str, batch_size: int,
                     backend_options: dict | None = None, device: Any = None, dtype: Any = None,
                     light: bool = True) -> list[VersionHandle]:
    """Handles for registered version names or loaded models.

    With ``light`` a registered local version with a recorded fingerprint and a
    ``tokenizer.json`` is resolved without loading its weights (nor torch); others are loaded
    (:func:`llmrca.models.load_version`, which checks the fingerprint).
    """
    if isinstance(versions, (str, bytes)) or not versions:
        raise InvalidArgumentError("versions must be a non-empty list of version names (or "
                                   "loaded models)")
    backend_class(backend)
    handles = []
    for version in versions:
        handle = None
        if isinstance(version, str):
            if light:
                handle = _light_handle(store, version, device, dtype, backend,
                                       backend_options)
            if handle is None:
                from llmrca.models import load_version

                handle = _loaded_handle(load_version(store, version, device=device, dtype=dtype),
                                        backend, batch_size, backend_options)
        else:
            handle = _loaded_handle(version, backend, batch_size, backend_options)
        handles.append(handle)
    names = [h.name for h in handles]
    if len(set(names)) != len(names):
        raise InvalidArgumentError(f"versions must be distinct; got {names}")
    return handles


def backend_class(name: str) -> Any:
    """The backend class (fails with the list of valid names), without importing torch.

    A backend that needs more than this machine has (vLLM: the package and a CUDA GPU) says so
    here, through its ``check_available`` classmethod, before any weights load.
    """
    from llmrca.replay.backends import BACKENDS

    cls = BACKENDS.get(name)
    check = getattr(cls, "check_available", None)
    if check is not None:
        check()
    return cls


def load_handles(store, handles: list[VersionHandle], *, backend: str, batch_size: int,
                 backend_options: dict | None, device: Any, dtype: Any) -> list[VersionHandle]:
    """Load the weights of light handles (the first time something must run)."""
    from llmrca.models import load_version

    return [h if not h.light else _loaded_handle(
        load_version(store, h.name, device=device, dtype=dtype), backend, batch_size,
        backend_options) for h in handles]


@dataclass
class PlannedSample:
    """One sample to have: where it belongs, its seed, key and rendered prompt."""

    interaction_id: str
    variant: str
    model_index: int
    sample_index: int
    seed: int
    sample_id: str
    prompt: RenderedPrompt
    warnings: list[str] = field(default_factory=list)


def last_user_text(messages) -> str:
    for message in reversed(messages):
        if message.get("role") == "user" and isinstance(message.get("content"), str):
            return message["content"]
    return ""


def check_plan_size(config: ReplayConfig, n_interactions: int, n_versions: int,
                    max_planned: int | None = None) -> int:
    """Planned samples (samples x interactions x variants x versions), refused above the bound
    (:func:`~llmrca.replay.config.max_planned_samples`) before anything is allocated."""
    planned = config.samples * n_interactions * len(config.variants) * n_versions
    bound = max_planned_samples(max_planned)
    if planned > bound:
        raise InvalidArgumentError(
            f"the replay would plan {planned:,} samples ({config.samples} samples x "
            f"{n_interactions} interaction(s) x {len(config.variants)} variant(s) x "
            f"{n_versions} version(s)), more than the limit of {bound:,}; lower --samples, or "
            f"raise the limit with --max-planned N (max_planned=N, LLMRCA_MAX_PLANNED_SAMPLES)")
    return planned


def plan_samples(config: ReplayConfig, handles: list[VersionHandle], interactions: pd.DataFrame,
                 category: str | None) -> tuple[list[PlannedSample], list[dict[str, Any]]]:
    """Render (and truncate, or refuse) every prompt and list every sample.

    Returns the plan and the judging context (one row per interaction and variant: ``prompt``,
    ``incident_output``, ``category``).
    """
    decoding = config.decoding
    plan: list[PlannedSample] = []
    context_rows: list[dict[str, Any]] = []
    for m_index, handle in enumerate(handles):
        window = handle.context_window
        budget = None if window is None else window - decoding.max_new_tokens
        for row in interactions.itertuples(index=False):
            # pandas-stubs type itertuples fields as any scalar; these are the interactions
            # table's columns (a str id, an optional system prompt, a list of messages).
            interaction_id = cast(str, row.interaction_id)
            row_messages = cast("list[dict[str, Any]]", row.messages)
            for variant in config.variants:
                system_prompt, messages, warning = variant.apply(
                    cast("str | None", row.system_prompt), row_messages)
                if m_index == 0:
                    context_rows.append({"interaction_id": interaction_id,
                                         "variant": variant.name,
                                         "prompt": last_user_text(messages),
                                         "incident_output": row.output, "category": category})
                prompt = render_prompt(handle.tokenizer, system_prompt, messages,
                                       max_prompt_tokens=budget, no_truncate=config.no_truncate,
                                       interaction_id=interaction_id, context=window,
                                       max_new_tokens=decoding.max_new_tokens)
                warnings = ([warning] if warning else []) + list(prompt.warnings)
                for index in range(config.samples):
                    seed = sample_seed(config.seed, interaction_id, handle.name, index)
                    plan.append(PlannedSample(
                        interaction_id, variant.name, m_index, index, seed,
                        sample_key(handle.fingerprint, handle.engine, prompt.prompt_id, decoding,
                                   seed), prompt, warnings))
    return plan, context_rows
