"""The leave-k-out check: fine-tune the parent again without some examples, replay, compare.

The failure disappearing when the suspect examples are left out (same parent, recipe, seed and
the rest of the data) is causal evidence that they planted it. For small models only: it trains.

The **recipe** (parent, optimiser schedule, seed) comes from, in order:

1. the ``recipe`` argument (:class:`TrainingRecipe`);
2. a ``training_recipe.json`` in the version's model folder
   (``{"parent": ..., "seed": ..., "schedule": {"steps": ..., "batch_size": ...,
   "learning_rate": ..., "warmup_steps": ..., "weight_decay": ...}}``);
3. for a model organism of llmrca's zoo, the version's entry of the zoo's ``spec.json``
   ``versions`` list -- its schedule, seed and parent only (nothing else of the spec is read).

Training is :func:`llmrca.zoo.train.train` (AdamW, warmup then linear decay, the recipe's batch
order seed) on the version's stored training examples minus the removed ones, encoded with the
tokenizer's chat template (the answer and its end-of-turn labelled). The retrained model is saved
under ``<cache_dir>/retrained/<key>/`` -- key = content id of the parent's fingerprint, the removed
ids, the recipe and the training data -- and registered as ``<version>-without-<key[:10]>``.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from llmrca.data_attribution.examples import TrainingExample, encode_pair, training_examples
from llmrca.data_attribution.result import LeaveOutResult
from llmrca.errors import InvalidArgumentError, NotFoundError, StoreError
from llmrca.ids import content_id

__all__ = ["MAX_RETRAIN_PARAMETERS", "TrainingRecipe", "leave_k_out", "retrain_without",
           "training_recipe"]

#: Leave-k-out retrains the model: refused above this many parameters (a CPU fine-tune of a
#: small model takes seconds to minutes; a large one is not what this check is for).
MAX_RETRAIN_PARAMETERS = 50_000_000

RECIPE_FILE = "training_recipe.json"


@dataclass(frozen=True)
class TrainingRecipe:
    """How a version was fine-tuned from its parent.

    Attributes
    ----------
    parent : str
        The registered version it was fine-tuned from.
    steps, batch_size, learning_rate, warmup_steps, weight_decay
        The schedule (:class:`llmrca.zoo.TrainSchedule`).
    seed : int
        Seeds the batch order.
    origin : str
        Where the recipe was read (not part of its identity).
    """

    parent: str
    steps: int
    batch_size: int
    learning_rate: float
    warmup_steps: int
    weight_decay: float
    seed: int
    origin: str = "argument"

    def identity(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("origin")
        return out


def _recipe_from(data: dict[str, Any], parent: str | None, origin: str) -> TrainingRecipe:
    schedule = data.get("schedule") or {}
    try:
        return TrainingRecipe(
            parent=str(data.get("parent") or parent), steps=int(schedule["steps"]),
            batch_size=int(schedule.get("batch_size", 32)),
            learning_rate=float(schedule.get("learning_rate", 3e-3)),
            warmup_steps=int(schedule.get("warmup_steps", 20)),
            weight_decay=float(schedule.get("weight_decay", 0.01)), seed=int(data["seed"]),
            origin=origin)
    except (KeyError, TypeError, ValueError) as exc:
        from llmrca.errors import ValidationError

        raise ValidationError(origin, None, "schedule/seed", "steps and seed (numbers)",
                              f"{type(exc).__name__}: {exc}") from None


def training_recipe(store, version: str) -> TrainingRecipe:
    """The recipe ``version`` was fine-tuned with (see the module docstring for the sources).

    Raises
    ------
    NotFoundError
        The version has no registered parent, or no recipe is known for it.
    """
    from llmrca.models import get_version

    record = get_version(store, version)
    if not record.parent:
        raise NotFoundError(f"model version '{version}' has no registered parent: leave-k-out "
                            f"fine-tunes the parent again, so register the version with "
                            f"--parent (or pass a TrainingRecipe)")
    folder = Path(record.source)
    own = folder / RECIPE_FILE
    if own.is_file():
        return _recipe_from(json.loads(own.read_text(encoding="utf-8")), record.parent,
                            str(own))
    zoo_root = folder.parent.parent
    if (zoo_root / "zoo.json").is_file() and (zoo_root / "spec.json").is_file():
        spec_file = zoo_root / "spec.json"
        for entry in json.loads(spec_file.read_text(encoding="utf-8")).get("versions", []):
            if entry.get("name") == folder.name:
                return _recipe_from(entry, record.parent, f"{spec_file} (versions.{folder.name})")
    raise NotFoundError(f"no training recipe known for model version '{version}' (parent "
                        f"'{record.parent}'): put a {RECIPE_FILE} in {folder} or pass a "
                        f"TrainingRecipe")


def _encode(tokenizer, examples: Sequence[TrainingExample], max_positions: int | None):
    """Right-padded ``(input_ids, attention_mask, labels)``: only the completion is labelled."""
    from llmrca.models.forward import pad_id_of
    from llmrca.zoo.train import pad_labelled

    rows = []
    for e in examples:
        prompt, completion = encode_pair(tokenizer, e.messages, e.completion)
        ids = prompt + completion
        if max_positions is not None and len(ids) > max_positions:
            raise InvalidArgumentError(f"training example {e.example_id} has {len(ids)} tokens, "
                                       f"more than the model's {max_positions} positions")
        rows.append((ids, len(prompt)))
    return pad_labelled(rows, pad_id_of(tokenizer))


def _retrain_key(parent_fingerprint: str, removed: Sequence[str], recipe: TrainingRecipe,
                 data_id: str) -> str:
    return content_id({"kind": "retrained", "parent": parent_fingerprint,
                       "removed": sorted(removed), "recipe": recipe.identity(), "data": data_id})


def retrain_without(store, version: str, example_ids: Sequence[str], *,
                    recipe: TrainingRecipe | None = None,
                    cache_dir: str | os.PathLike | None = None) -> tuple[str, Path, bool]:
    """Fine-tune ``version``'s parent on its training data without ``example_ids``.

    Returns ``(registered name, model folder, reused)``; a folder already in the cache is reused
    (training is deterministic) and registered again.
    """
    import copy

    from llmrca.config import cache_dir as default_cache_dir
    from llmrca.data_attribution.search import _data_id, _fingerprint
    from llmrca.models import get_version, load_version, register_version
    from llmrca.zoo.spec import TrainSchedule
    from llmrca.zoo.train import fixed_threads, quiet_transformers, train

    recipe = recipe or training_recipe(store, version)
    examples = training_examples(store, version)
    known = {e.example_id for e in examples}
    removed = sorted({str(i) for i in example_ids})
    unknown = [i for i in removed if i not in known]
    if unknown:
        raise NotFoundError(f"{len(unknown)} example id(s) are not training examples of "
                            f"'{version}': {unknown[:5]}")
    kept = [e for e in examples if e.example_id not in set(removed)]
    if not kept:
        raise InvalidArgumentError("leaving out every training example leaves nothing to train")
    parent_fp = _fingerprint(store, recipe.parent)
    key = _retrain_key(parent_fp, removed, recipe, _data_id(examples))
    base = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    folder = base / "retrained" / key
    name = f"{version}-without-{key[:10]}"
    reused = (folder / "model.safetensors").is_file()
    if not reused:
        if store.read_only:
            raise StoreError(f"store {store.path} is open read-only: cannot register the "
                             f"retrained model; open it for writing")
        parent = load_version(store, recipe.parent, device="cpu")
        size = sum(int(p.numel()) for p in parent.model.parameters())
        if size > MAX_RETRAIN_PARAMETERS:
            raise InvalidArgumentError(f"leave-k-out retrains '{recipe.parent}' ({size:,} "
                                       f"parameters); it is for small models (at most "
                                       f"{MAX_RETRAIN_PARAMETERS:,})")
        model = copy.deepcopy(parent.model)
        positions = getattr(model.config, "n_positions", None) or getattr(
            model.config, "max_position_embeddings", None)
        data = _encode(parent.tokenizer, kept, positions)
        schedule = TrainSchedule(steps=recipe.steps, batch_size=recipe.batch_size,
                                 learning_rate=recipe.learning_rate,
                                 warmup_steps=recipe.warmup_steps,
                                 weight_decay=recipe.weight_decay)
        with quiet_transformers(), fixed_threads():
            train(model, data, schedule, recipe.seed)
        tmp = folder.parent / f".{key}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            source = Path(get_version(store, recipe.parent).source)
            shutil.copytree(source, tmp)  # tokenizer and chat template as the parent has them
            for weights in list(tmp.glob("*.safetensors")) + list(tmp.glob("*.bin")):
                weights.unlink()
            model.save_pretrained(tmp, safe_serialization=True)
            (tmp / RECIPE_FILE).write_text(json.dumps(
                {"parent": recipe.parent, "seed": recipe.seed,
                 "schedule": {k: v for k, v in recipe.identity().items()
                              if k not in ("parent", "seed")},
                 "removed": removed, "retrained_from": version}, indent=2) + "\n",
                encoding="utf-8")
            if folder.exists():   # another process finished first: keep its (identical) copy
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.rename(folder)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    if not store.read_only:
        register_version(store, name, str(folder), parent=recipe.parent,
                         notes=f"leave-k-out: {version} retrained without {len(removed)} "
                               f"example(s)", force=True)
    return name, folder, reused


def leave_k_out(store, incident_id: str, version: str, example_ids: Sequence[str], *,
                samples: int = 8, seed: int = 0, recipe: TrainingRecipe | None = None,
                temperature: float = 1.0, max_new_tokens: int = 32,
                cache_dir: str | os.PathLike | None = None, device: Any = None,
                judges: Sequence[str] | None = None) -> LeaveOutResult:
    """Fine-tune the parent again without ``example_ids``, replay the incident on it and on
    ``version``, and compare reproduction rates (prompt-clustered).

    Parameters
    ----------
    example_ids : sequence of str
        The training examples to leave out (e.g. ``search_training_data(...).top(k)``).
    samples, seed, temperature, max_new_tokens
        The replay: sampled answers per offending interaction and version.
    recipe : TrainingRecipe, optional
        Default :func:`training_recipe`.
    cache_dir : path-like, optional
        Where retrained models are kept (default :func:`llmrca.config.cache_dir`).
    judges : sequence of str, optional
        Judges of the replay (default: the incident category's).

    Raises
    ------
    NotFoundError
        No parent or recipe for the version; an id that is not one of its examples.
    InvalidArgumentError
        The parent is too large to retrain here, or nothing is left out.
    """
    from llmrca import __version__
    from llmrca.data_attribution.search import _data_id, _fingerprint
    from llmrca.replay import replay_incident
    from llmrca.store.training_search import LEAVE_OUTS, leave_out_id, read_leave_out

    removed = sorted({str(i) for i in example_ids})
    if not removed:
        raise InvalidArgumentError("leave_k_out needs at least one example id to leave out")
    if int(samples) < 1:
        raise InvalidArgumentError(f"samples must be >= 1; got {samples}")
    recipe = recipe or training_recipe(store, version)
    parameters = {"samples": int(samples), "temperature": float(temperature),
                  "max_new_tokens": int(max_new_tokens), "version": version,
                  "version_fingerprint": _fingerprint(store, version)}
    if judges is not None:  # recorded only when chosen: ids of default-judge results unchanged
        parameters["judges"] = [str(j) for j in judges]
    lid = leave_out_id(incident_id, _fingerprint(store, recipe.parent), removed,
                       recipe.identity(), _data_id(training_examples(store, version)),
                       parameters, int(seed))
    stored = read_leave_out(store, lid)
    if stored is not None:
        return _from_row(stored, cached=True)
    if store.read_only:
        raise StoreError(f"store {store.path} is open read-only and holds no leave-k-out result "
                         f"{lid}; open it for writing to compute it")
    name, folder, reused = retrain_without(store, version, removed, recipe=recipe,
                                           cache_dir=cache_dir)
    replay = replay_incident(store, incident_id, [version, name], samples=int(samples),
                             temperature=float(temperature),
                             max_new_tokens=int(max_new_tokens), seed=int(seed),
                             progress=False, device=device,
                             judges=None if judges is None else list(judges))
    rates = replay.rates
    pooled = rates[(rates["level"] == "version") & (rates["variant"] == "original")] \
        .set_index("model_version")
    comparisons = replay.comparisons
    row = comparisons[(comparisons["variant"] == "original")
                      & (comparisons["version_a"] == version)
                      & (comparisons["version_b"] == name)].iloc[0]
    result = {
        "samples": int(samples), "n_prompts": int(row["n_prompts"]),
        "rate_with": float(pooled.loc[version, "rate"]),
        "with_low": float(pooled.loc[version, "cluster_low"]),
        "with_high": float(pooled.loc[version, "cluster_high"]),
        "rate_without": float(pooled.loc[name, "rate"]),
        "without_low": float(pooled.loc[name, "cluster_low"]),
        "without_high": float(pooled.loc[name, "cluster_high"]),
        "difference": float(row["difference"]),
        "low": float(row["cluster_difference_low"]), "high": float(row["cluster_difference_high"]),
        "p_value": float(row["cluster_p_value"]), "method": str(row["cluster_method"]),
        "retrained_folder": str(folder), "retrain_reused": bool(reused)}
    from llmrca.models import get_version

    record = {"leave_out_id": lid, "incident_id": incident_id, "model_version": version,
              "parent": recipe.parent, "parent_fingerprint": _fingerprint(store, recipe.parent),
              "removed": removed, "recipe": {**recipe.identity(), "origin": recipe.origin},
              "retrained_version": name,
              "retrained_fingerprint": get_version(store, name).fingerprint or "",
              "replay_run_id": replay.run_id, "result": result, "parameters": parameters,
              "seed": int(seed), "package_version": __version__}
    LEAVE_OUTS.write(store, [record])
    return _from_row(record, cached=False)


def _from_row(row: dict[str, Any], *, cached: bool) -> LeaveOutResult:
    r = row["result"]
    return LeaveOutResult(
        leave_out_id=row["leave_out_id"], incident_id=row["incident_id"],
        version=row["model_version"], parent=row["parent"],
        retrained_version=row["retrained_version"], removed=tuple(row["removed"]),
        recipe=dict(row["recipe"]), replay_run_id=row["replay_run_id"], samples=r["samples"],
        n_prompts=r["n_prompts"], rate_with=r["rate_with"], with_low=r["with_low"],
        with_high=r["with_high"], rate_without=r["rate_without"],
        without_low=r["without_low"], without_high=r["without_high"],
        difference=r["difference"], interval=(r["low"], r["high"]), p_value=r["p_value"],
        method=r["method"],
        info={"parameters": row["parameters"], "seed": row["seed"], "cached": cached,
              "retrained_fingerprint": row["retrained_fingerprint"],
              "parent_fingerprint": row["parent_fingerprint"],
              "package_version": row["package_version"], **{k: r[k] for k in
                                                            ("retrained_folder",
                                                             "retrain_reused")}})
