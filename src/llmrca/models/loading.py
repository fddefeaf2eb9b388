"""Loading model versions safely, and a small LRU cache of loaded models.

Every model goes through ``AutoModelForCausalLM`` / ``AutoTokenizer`` with ``trust_remote_code=False``
(always, explicitly), safetensors only unless the version opted in to pickle weights, and
``local_files_only`` whenever the source is a local folder or the session is offline
(``LLMRCA_OFFLINE=1`` or ``HF_HUB_OFFLINE=1``). torch and transformers are imported on first use.
"""

from __future__ import annotations

import os
import pickle
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from llmrca import config
from llmrca.errors import FingerprintMismatchError, ModelLoadError, ModelRegistryError
from llmrca.fingerprint import compute_fingerprint, fingerprint_files, is_local_source
from llmrca.store import model_versions as rows
from llmrca.store.core import Store
from llmrca.store.model_registry import get_version

#: Default number of loaded models the cache keeps (``LLMRCA_MODEL_CACHE_SIZE`` overrides it).
DEFAULT_CACHE_SIZE = 3

_DTYPES = {
    "float32": "float32", "fp32": "float32", "float": "float32",
    "bfloat16": "bfloat16", "bf16": "bfloat16",
    "float16": "float16", "fp16": "float16", "half": "float16",
}


@dataclass(frozen=True)
class LoadedModel:
    """A registered version, loaded and ready (``model.eval()``, tokenizer padding on the left).

    Attributes
    ----------
    name : str
        The version name.
    source : str
        Where it was loaded from.
    fingerprint : str or None
        The fingerprint of the files it was loaded from (``None`` for a hub id whose cached
        snapshot could not be located).
    model : transformers.PreTrainedModel
        The causal LM, on ``device``, in eval mode.
    tokenizer : transformers tokenizer
        Its tokenizer; ``padding_side="left"`` and a pad token are set at runtime only.
    device : str
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
    dtype : str
        The parameter dtype (``"float32"``, ``"bfloat16"``, ``"float16"``).
    """

    name: str
    source: str
    fingerprint: str | None
    model: Any
    tokenizer: Any
    device: str
    dtype: str = "float32"


class ModelCacheInfo(NamedTuple):
    """Counters of the loaded-model cache (as ``functools.lru_cache`` reports them)."""

    hits: int
    misses: int
    maxsize: int
    currsize: int


# -- device and dtype ----------------------------------------------------------------------------
def resolve_device(device: Any = None) -> str:
    """``device`` as a string; ``None`` picks CUDA when available, else CPU."""
    import torch

    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ModelLoadError(f"unknown device {device!r}; expected 'cpu', 'cuda' or 'cuda:N'") \
            from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(f"device {device!r} asked for, but CUDA is not available here; "
                             f"use device='cpu'")
    return str(resolved)


def resolve_dtype(dtype: Any = None, device: str = "cpu") -> str:
    """``dtype`` as a name: float32 by default on every device; bfloat16/float16 when asked.

    Half precision on a CPU is allowed but slow and less exact; it is meant for CUDA.
    """
    if dtype is None:
        return "float32"
    text = str(dtype).removeprefix("torch.")
    if text not in _DTYPES:
        raise ModelLoadError(f"unknown dtype {dtype!r}; valid: float32, bfloat16, float16")
    return _DTYPES[text]


# -- loading -------------------------------------------------------------------------------------
def _check_local_folder(path: Path, allow_pickle: bool) -> None:
    if not path.is_dir():
        raise ModelLoadError(f"model source {path} does not exist or is not a folder")
    names = [p.name for p in fingerprint_files(path)]
    safetensors = [n for n in names if n.endswith(".safetensors")]
    pickles = [n for n in names if n.endswith(".bin")]
    if not safetensors and not pickles:
        raise ModelLoadError(f"model source {path} holds no weights (*.safetensors or *.bin)")
    if not safetensors and not allow_pickle:
        raise ModelLoadError(
            f"model source {path} has only pickle weights ({', '.join(pickles)}) and no "
            f"*.safetensors; unpickling can run arbitrary code, so pass --allow-pickle "
            f"(allow_pickle=True) only if you trust these files")


def load_pretrained(source: str | os.PathLike, *, revision: str | None = None,
                    allow_pickle: bool = False, device: Any = None, dtype: Any = None):
    """Load a causal LM and its tokenizer from a local folder or a hub id, safely.

    Parameters
    ----------
    source : str or path-like
        A local model folder or a hub id.
    revision : str, optional
        Hub revision (branch, tag or commit).
    allow_pickle : bool
        Allow ``*.bin`` (pickle) weights; they are still read with ``weights_only=True``.
    device : str or torch.device, optional
        Defaults to CUDA when available, else CPU.
    dtype : str or torch.dtype, optional
        Defaults to float32; ``"bfloat16"`` or ``"float16"`` when asked.

    Returns
    -------
    (model, tokenizer)
        The model in eval mode on ``device``; the tokenizer pads on the left.

    Raises
    ------
    ModelLoadError
        The folder is missing, has only pickle weights without opt-in, or transformers cannot load
        it (for a hub id offline: not in the local cache).
    """
    text = os.fspath(source)
    local = is_local_source(text)
    if local:
        path = Path(text).expanduser()
        _check_local_folder(path, allow_pickle)
        text = str(path)
    device_name = resolve_device(device)
    dtype_name = resolve_dtype(dtype, device_name)

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    # transformers 5 draws a "Loading weights" bar per model; our faces draw their own.
    hf_logging.disable_progress_bar()
    local_only = local or config.offline()
    common = {"revision": revision, "local_files_only": local_only, "trust_remote_code": False}
    where = text + (f" (revision {revision})" if revision else "")
    try:
        tokenizer = AutoTokenizer.from_pretrained(text, **common)
        model = AutoModelForCausalLM.from_pretrained(
            text, **common, use_safetensors=True if not allow_pickle else None,
            weights_only=True, dtype=getattr(torch, dtype_name))
    except (OSError, ValueError, KeyError, RuntimeError, pickle.UnpicklingError) as exc:
        # UnpicklingError: weights_only=True refused a pickle that holds more than tensors.
        hint = ("; offline mode is on, so only files already on this machine can be used"
                if local_only and not local else "")
        raise ModelLoadError(f"cannot load model from {where}: {exc}{hint}") from exc
    # transformers declares PreTrainedModel.to with @wraps(torch.nn.Module.to); typeshed's
    # functools._Wrapped is not a descriptor, so mypy wants ``self`` passed explicitly.
    model.to(device_name)  # type: ignore[arg-type]
    model.eval()
    # Runtime only: batched generation pads on the left. Nothing here is saved back.
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


# -- the cache -----------------------------------------------------------------------------------
_cache: OrderedDict[tuple, tuple[Any, Any]] = OrderedDict()
_cache_lock = threading.RLock()
_counters = {"hits": 0, "misses": 0}


def model_cache_size() -> int:
    """How many loaded models the cache keeps: ``$LLMRCA_MODEL_CACHE_SIZE`` or 3 (0 disables it)."""
    raw = os.environ.get("LLMRCA_MODEL_CACHE_SIZE", "").strip()
    if not raw:
        return DEFAULT_CACHE_SIZE
    try:
        size = int(raw)
    except ValueError:
        size = -1
    if size < 0:
        raise ModelRegistryError(
            f"LLMRCA_MODEL_CACHE_SIZE: expected a whole number >= 0, got {raw!r}")
    return size


def clear_model_cache() -> None:
    """Drop every cached model (and reset the counters)."""
    with _cache_lock:
        _cache.clear()
        _counters.update(hits=0, misses=0)


def model_cache_info() -> ModelCacheInfo:
    """Hits, misses, capacity and current size of the loaded-model cache."""
    with _cache_lock:
        return ModelCacheInfo(_counters["hits"], _counters["misses"], model_cache_size(),
                              len(_cache))


def _cache_get(key: tuple):
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            _counters["hits"] += 1
            return _cache[key]
        _counters["misses"] += 1
        return None


def _cache_put(key: tuple, value: tuple[Any, Any]) -> None:
    size = model_cache_size()
    with _cache_lock:
        if size == 0:
            return
        _cache[key] = value
        _cache.move_to_end(key)
        while len(_cache) > size:
            _cache.popitem(last=False)


def _hub_snapshot_fingerprint(source: str, revision: str | None) -> str | None:
    """The fingerprint of a hub id's cached snapshot, or None when it cannot be located offline."""
    try:
        from huggingface_hub import snapshot_download

        folder = snapshot_download(source, revision=revision, local_files_only=True)
        return compute_fingerprint(folder) if folder else None
    except Exception:  # noqa: BLE001 - no cached snapshot is a normal state, not an error here
        return None


def load_version(store: Store, name: str, *, device: Any = None, dtype: Any = None,
                 verify: bool = True) -> LoadedModel:
    """Load a registered version (through the cache), checking its files first.

    Parameters
    ----------
    store : Store
        The store the version is registered in.
    name : str
        The version name.
    device, dtype : optional
        As in :func:`load_pretrained`.
    verify : bool
        Re-hash a local version's files and refuse them if they changed since registration. With
        ``False`` the recorded fingerprint is trusted (faster for very large models).

    Returns
    -------
    LoadedModel

    Raises
    ------
    UnknownNameError
        ``name`` is not registered (the message lists the registered versions).
    FingerprintMismatchError
        The files no longer hash to the recorded fingerprint.
    ModelLoadError
        The source is missing or cannot be loaded safely.

    Notes
    -----
    The cache is keyed by (source, revision, fingerprint, device, dtype): two names registered on
    the same files share one loaded model, and changed files never hit a stale entry. It keeps at
    most :func:`model_cache_size` models, evicting the least recently used.
    """
    version = get_version(store, name)
    device_name = resolve_device(device)
    dtype_name = resolve_dtype(dtype, device_name)
    local = version.is_local
    fingerprint = version.fingerprint
    if local:
        if not Path(version.source).is_dir():
            raise ModelLoadError(f"model version '{name}': source {version.source} does not "
                                 f"exist or is not a folder")
        if verify or fingerprint is None:
            actual = compute_fingerprint(version.source)
            assert actual is not None  # None is for hub ids only; this source is local
            if fingerprint is not None and actual != fingerprint:
                raise FingerprintMismatchError(name, version.source, fingerprint, actual)
            fingerprint = actual

    def key_for(fp):
        return (version.source, version.revision, fp, device_name, dtype_name,
                version.allow_pickle)

    cache_key = key_for(fingerprint)
    cached = _cache_get(cache_key)
    if cached is None:
        cached = load_pretrained(version.source, revision=version.revision,
                                 allow_pickle=version.allow_pickle, device=device_name,
                                 dtype=dtype_name)
        if not local:
            # A hub id is fingerprinted once its files are in the local cache.
            actual = _hub_snapshot_fingerprint(version.source, version.revision)
            if actual is not None:
                if fingerprint is not None and verify and actual != fingerprint:
                    raise FingerprintMismatchError(name, version.source, fingerprint, actual)
                if fingerprint is None and not store.read_only:
                    rows.set_model_fingerprint(store, name, actual)
                    cache_key = key_for(actual)  # what the next lookup will use
                fingerprint = actual
        _cache_put(cache_key, cached)
    model, tokenizer = cached
    return LoadedModel(name=name, source=version.source, fingerprint=fingerprint, model=model,
                       tokenizer=tokenizer, device=device_name, dtype=dtype_name)
