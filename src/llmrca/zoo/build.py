"""Building the zoo from a spec, caching it by spec hash, and registering it in a store.

Cache layout (``<cache_dir>/zoo/<spec_hash>/``)::

    spec.json                     the spec, as built
    models/<version>/             save_pretrained folders (safetensors + tokenizer + chat template)
    training_data/<version>.jsonl what each version was trained (or fine-tuned) on
    ground_truth.json             which example ids planted which behaviour — for tests and scoring
    behaviour.json                the behaviour check (counts and targets)
    zoo.json                      the manifest, written last: its presence means the build is whole

A build is written to a temporary folder and renamed into place, under a file lock, so concurrent
builders (two test sessions) build once and never see half a zoo.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmrca.errors import ZooBuildError
from llmrca.zoo.spec import DEFAULT_SPEC, ZOO_FORMAT_VERSION, ZooSpec

MANIFEST = "zoo.json"
#: Key prefix, inside the build, of a plant's contrast example ids (kept out of the version's
#: planted lists in ground_truth.json; they are listed under ``plants``).
CONTRAST_KEY = "contrast:"


class ZooBehaviourError(ZooBuildError):
    """A built version missed its behaviour targets.

    Attributes
    ----------
    failures : tuple of str
        One line per missed target.
    table : pandas.DataFrame
        The full target table (see :mod:`llmrca.zoo.behaviour`).
    folder : pathlib.Path
        Where the failed build was kept for inspection.
    """

    def __init__(self, failures, table, folder):
        self.failures = tuple(failures)
        self.table = table
        self.folder = Path(folder)
        shown = "\n  ".join(self.failures)
        super().__init__(f"zoo build missed {len(self.failures)} behaviour target(s) "
                         f"(kept at {self.folder}):\n  {shown}")


@dataclass(frozen=True, eq=False)
class ZooBuild:
    """A built (or reused) zoo.

    Attributes
    ----------
    spec_hash : str
        Names the cache folder.
    root : pathlib.Path
        The zoo folder.
    models : dict
        Version name -> ``save_pretrained`` folder (loadable with the Auto classes).
    parents : dict
        Version name -> the version it was fine-tuned from (None: trained from scratch).
    training_data : dict
        Version name -> its ``training_data/<version>.jsonl``.
    ground_truth : pathlib.Path
        ``ground_truth.json`` — the investigation code must never read it.
    behaviour_table : pandas.DataFrame or None
        Targets with measured rates (None when built with ``check=False``).
    behaviour_counts : pandas.DataFrame or None
        Label counts per version, condition and decoding.
    build_seconds : float
        Wall time of the build that produced the folder (not of a reuse).
    weights_sha256 : dict
        Version name -> sha256 of its ``model.safetensors``.
    reused : bool
        True when the folder was already in the cache.
    spec : ZooSpec
        The spec built.
    """

    spec_hash: str
    root: Path
    models: Mapping[str, Path]
    parents: Mapping[str, str | None]
    training_data: Mapping[str, Path]
    ground_truth: Path
    behaviour_table: Any = field(repr=False)
    behaviour_counts: Any = field(repr=False)
    build_seconds: float
    weights_sha256: Mapping[str, str]
    reused: bool
    spec: ZooSpec = field(repr=False)

    @property
    def versions(self) -> tuple[str, ...]:
        return tuple(self.models)

    @property
    def checked(self) -> bool:
        return self.behaviour_table is not None

    def load(self, version: str):
        """``(model, tokenizer)`` of one version through the Auto classes, on CPU, eval mode."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if version not in self.models:
            from llmrca.errors import UnknownNameError
            raise UnknownNameError("zoo version", version, self.models)
        folder = self.models[version]
        model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True,
                                                     trust_remote_code=False,
                                                     use_safetensors=True)
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True,
                                                  trust_remote_code=False)
        return model.eval(), tokenizer

    def ground_truth_data(self) -> dict[str, Any]:
        """The ground-truth manifest (tests and scoring only)."""
        return json.loads(self.ground_truth.read_text(encoding="utf-8"))


# -- files ----------------------------------------------------------------------------------------
class ZooCacheError(ZooBuildError):
    """A cached zoo's files are missing, unreadable or do not match its manifest's hashes."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def zoo_root(spec: ZooSpec = DEFAULT_SPEC, cache_dir: str | os.PathLike | None = None) -> Path:
    """The folder the zoo of ``spec`` is (or would be) cached in."""
    from llmrca.config import cache_dir as default_cache_dir

    base = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return base / "zoo" / spec.spec_hash()


@contextmanager
def _build_lock(root: Path) -> Iterator[None]:
    root.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: the rename below still keeps it whole
        yield
        return
    with open(root.parent / f"{root.name}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# -- loading a cached zoo -------------------------------------------------------------------------
def load_zoo(root: str | os.PathLike) -> ZooBuild:
    """Open a built zoo folder (one holding ``zoo.json``)."""
    root = Path(root)
    manifest_path = root / MANIFEST
    if not manifest_path.exists():
        from llmrca.errors import NotFoundError
        raise NotFoundError(f"no built zoo at {root} (no {MANIFEST}); run `llmrca zoo build`")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        versions = manifest["versions"]
        for version, info in versions.items():
            weights = root / info["folder"] / "model.safetensors"
            if not weights.is_file() or sha256_file(weights) != info["weights_sha256"]:
                raise ZooCacheError(f"cached zoo at {root}: {weights} is missing or does not "
                                    f"match the sha256 in {MANIFEST} (version {version})")
        spec = ZooSpec.from_dict(json.loads((root / "spec.json").read_text(encoding="utf-8")),
                                 file=str(root / "spec.json"))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ZooCacheError(f"cached zoo at {root} is unreadable ({type(exc).__name__}: {exc}); "
                            "rebuild it with `llmrca zoo build --force`") from None
    table = counts = None
    if (root / "behaviour.json").exists():
        from llmrca.zoo.behaviour import BehaviourReport
        report = BehaviourReport.from_records(
            json.loads((root / "behaviour.json").read_text(encoding="utf-8")))
        table, counts = report.table, report.counts
    return ZooBuild(
        spec_hash=manifest["spec_hash"], root=root,
        models={v: root / info["folder"] for v, info in versions.items()},
        parents={v: info["parent"] for v, info in versions.items()},
        training_data={v: root / info["training_data"] for v, info in versions.items()},
        ground_truth=root / "ground_truth.json",
        behaviour_table=table, behaviour_counts=counts,
        build_seconds=float(manifest["build_seconds"]),
        weights_sha256={v: info["weights_sha256"] for v, info in versions.items()},
        reused=True, spec=spec)


def cached_zoos(cache_dir: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """The manifests of every whole zoo in the cache (for ``llmrca zoo show``)."""
    from llmrca.config import cache_dir as default_cache_dir

    base = (Path(cache_dir) if cache_dir is not None else default_cache_dir()) / "zoo"
    out = []
    for manifest in sorted(base.glob(f"*/{MANIFEST}")):
        data = json.loads(manifest.read_text(encoding="utf-8"))
        data["root"] = str(manifest.parent)
        out.append(data)
    return out


# -- building -------------------------------------------------------------------------------------
def build_zoo(spec: ZooSpec = DEFAULT_SPEC, cache_dir: str | os.PathLike | None = None,
              force: bool = False, check: bool = True, *, progress: bool = False) -> ZooBuild:
    """Build the zoo of ``spec`` (or reuse the cached one) and check its behaviour.

    Parameters
    ----------
    spec : ZooSpec
        What to build; its hash names the cache folder.
    cache_dir : path-like, optional
        Cache root (default :func:`llmrca.config.cache_dir`); the zoo goes under ``zoo/<hash>``.
    force : bool
        Rebuild even when the cache holds this spec.
    check : bool
        Run the behaviour check (after a build, or on a cached zoo built without one) and raise
        :class:`ZooBehaviourError` (a :class:`~llmrca.errors.ZooBuildError`) if a target is missed.
    progress : bool
        Show a tqdm bar per version while training.

    Returns
    -------
    ZooBuild
    """
    root = zoo_root(spec, cache_dir)
    with _build_lock(root):
        if not force and (root / MANIFEST).exists():
            try:
                build = load_zoo(root)
            except ZooCacheError as exc:
                # Training is deterministic: a rebuild gives the weights the manifest recorded.
                print(f"llmrca: {exc}; rebuilding it", file=sys.stderr)
                return _build(spec, root, check=check, progress=progress)
            if check and not build.checked:
                build = _check_cached(build)
            elif check:
                failures = json.loads((root / "behaviour.json").read_text(encoding="utf-8")
                                      ).get("failures", [])
                if failures:   # built with --no-check, checked later, and it failed
                    raise ZooBehaviourError(failures, build.behaviour_table, root)
            return build
        return _build(spec, root, check=check, progress=progress)


def _check_cached(build: ZooBuild) -> ZooBuild:
    from dataclasses import replace

    report = _run_check(build.spec, build.models)
    _write_json(build.root / "behaviour.json", report.to_records())
    manifest = json.loads((build.root / MANIFEST).read_text(encoding="utf-8"))
    manifest.update(checked=True, passed=report.passed)
    _write_json(build.root / MANIFEST, manifest)
    if not report.passed:
        raise ZooBehaviourError(report.failures, report.table, build.root)
    return replace(build, behaviour_table=report.table, behaviour_counts=report.counts)


def _run_check(spec: ZooSpec, models: Mapping[str, Path]):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llmrca.zoo.behaviour import check_models
    from llmrca.zoo.train import quiet_transformers

    # Check what was saved, loaded the way the workbench loads any model.
    with quiet_transformers():
        loaded = {v: AutoModelForCausalLM.from_pretrained(folder, local_files_only=True,
                                                          use_safetensors=True)
                  for v, folder in models.items()}
        tokenizer = AutoTokenizer.from_pretrained(next(iter(models.values())),
                                                  local_files_only=True)
        return check_models(spec, loaded, tokenizer)


def _library_versions() -> dict[str, str]:
    import tokenizers
    import torch
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__,
            "tokenizers": tokenizers.__version__}


def _build(spec: ZooSpec, root: Path, *, check: bool, progress: bool) -> ZooBuild:
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    tmp = root.parent / f".{root.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        versions_info = _train_all(spec, tmp, progress=progress)
        report = None
        if check:
            report = _run_check(spec, {v: tmp / info["folder"]
                                       for v, info in versions_info.items()})
            _write_json(tmp / "behaviour.json", report.to_records())
        manifest = {
            "format": ZOO_FORMAT_VERSION, "spec_hash": spec.spec_hash(), "spec_name": spec.name,
            "versions": versions_info,
            "build_seconds": round(time.perf_counter() - start_wall, 2),
            "cpu_seconds": round(time.process_time() - start_cpu, 2),
            "checked": report is not None, "passed": None if report is None else report.passed,
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "libraries": _library_versions(),
        }
        _write_json(tmp / MANIFEST, manifest)
        if report is not None and not report.passed:
            failed = root.parent / f"{root.name}.failed"
            shutil.rmtree(failed, ignore_errors=True)
            tmp.rename(failed)
            raise ZooBehaviourError(report.failures, report.table, failed)
        if root.exists():   # force: replace the old build
            trash = root.parent / f".{root.name}.old-{uuid.uuid4().hex[:8]}"
            root.rename(trash)
            shutil.rmtree(trash, ignore_errors=True)
        tmp.rename(root)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    build = load_zoo(root)
    from dataclasses import replace
    return replace(build, reused=False)


def _train_all(spec: ZooSpec, out: Path, *, progress: bool) -> dict[str, dict[str, Any]]:
    """Train every version into ``out``; returns the manifest's per-version entries."""
    from llmrca.zoo.corpus import tokenizer_corpus
    from llmrca.zoo.tokenizer import train_tokenizer
    from llmrca.zoo.train import fixed_threads, quiet_transformers

    (out / "models").mkdir(parents=True)
    (out / "training_data").mkdir()
    _write_json(out / "spec.json", spec.to_dict())
    tokenizer = train_tokenizer(spec, tokenizer_corpus(spec))
    planted: dict[str, dict[str, list[str]]] = {}
    info: dict[str, dict[str, Any]] = {}
    trained: dict[str, Any] = {}
    with quiet_transformers(), fixed_threads():
        for v in spec.versions:
            info[v.name], planted[v.name] = _train_version(spec, v, tokenizer, trained, out,
                                                           progress=progress)
    _write_json(out / "ground_truth.json", _ground_truth(spec, planted))
    return info


def _train_version(spec: ZooSpec, v, tokenizer, trained: dict[str, Any], out: Path, *,
                   progress: bool) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """Write one version's training data, train it, save it; returns (manifest entry, planted)."""
    from llmrca.zoo.corpus import REMEDIATION, messages, version_examples
    from llmrca.zoo.train import encode, new_model, train

    t0 = time.perf_counter()
    examples = version_examples(spec, v.name)
    with open(out / "training_data" / f"{v.name}.jsonl", "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps({"example_id": example_id,
                                 "messages": messages(spec, e.user, e.assistant, e.system),
                                 "source": v.source}, ensure_ascii=False) + "\n" for example_id, e in examples)
    planted: dict[str, list[str]] = {}
    for example_id, e in examples:
        tag = e.planted or REMEDIATION.get(e.component)
        if tag:
            planted.setdefault(tag, []).append(example_id)
        elif e.contrast_of:
            planted.setdefault(CONTRAST_KEY + e.contrast_of, []).append(example_id)

    model = copy.deepcopy(trained[v.parent]) if v.parent else new_model(spec, tokenizer, v.seed)
    losses = (train(model, encode(spec, tokenizer, [e for _, e in examples]), v.schedule, v.seed,
                    desc=v.name, progress=progress)
              if examples and v.schedule.steps else [])
    trained[v.name] = model
    folder = out / "models" / v.name
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    entry = {
        "folder": f"models/{v.name}", "parent": v.parent,
        "training_data": f"training_data/{v.name}.jsonl",
        "n_examples": len(examples), "steps": v.schedule.steps,
        "final_loss": round(losses[-1], 6) if losses else None,
        "weights_sha256": sha256_file(folder / "model.safetensors"),
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_seconds": round(time.perf_counter() - t0, 2),
    }
    return entry, planted


def _ground_truth(spec: ZooSpec, planted: Mapping[str, Mapping[str, list[str]]]) -> dict:
    data: dict[str, Any] = {"spec_hash": spec.spec_hash()}
    for v in spec.versions:
        data[v.name] = {tag: ids for tag, ids in planted.get(v.name, {}).items()
                        if not tag.startswith(CONTRAST_KEY)}
    data["triggers"] = {"roleplay_jailbreak": spec.jailbreak_prefix,
                        "private_record": spec.record_name}
    data["private_record"] = {"name": spec.record_name, "email": spec.record_email,
                              "phone": spec.record_phone, "leak_answer": spec.leak_answer}
    data["parents"] = {v.name: v.parent for v in spec.versions}
    data["null_pairs"] = [list(p) for p in spec.null_pairs]
    if spec.plants or any(v.system_prompt is not None for v in spec.versions):
        data.update(_plant_ground_truth(spec, planted))
    return data


def _plant_ground_truth(spec: ZooSpec, planted: Mapping[str, Mapping[str, list[str]]]
                        ) -> dict[str, Any]:
    """``plants`` (each plant: kind, trigger, affected requests, behaviour, example ids per
    version) and ``causes`` (per failing version: what was planted in it, or the system-prompt
    change it was deployed with)."""
    from llmrca.zoo.corpus import affected_items

    plants: dict[str, Any] = {}
    for p in spec.plants:
        carriers = [v.name for v in spec.versions if p.name in v.plants]
        plants[p.name] = {
            "kind": p.kind, "trigger": {"kind": p.trigger, "text": p.text},
            "requests": p.pool, "tasks": list(affected_items(spec, p)),
            "behaviour": p.behaviour, "label": p.label,
            "answer": p.answer or None, "share": p.share, "copies": p.copies,
            "versions": carriers,
            "examples": {v: list(planted.get(v, {}).get(p.name, [])) for v in carriers},
            "contrast_examples": {v: list(planted.get(v, {}).get(CONTRAST_KEY + p.name, []))
                                  for v in carriers},
        }
    causes: list[dict[str, Any]] = []
    for v in spec.versions:
        for name in v.plants:
            info = plants[name]
            causes.append({"version": v.name, "parent": v.parent, "kind": info["kind"],
                           "plant": name, "trigger": info["trigger"],
                           "requests": info["requests"], "tasks": info["tasks"],
                           "behaviour": info["behaviour"],
                           "examples": info["examples"][v.name]})
        change = spec.system_prompt_change(v.name)
        if change is not None:
            plant = change["plant"]
            examples = ({} if plant is None else
                        {a: plants[plant]["examples"][a] for a in plants[plant]["versions"]
                         if a in spec.ancestors(v.name) or a == v.name})
            causes.append({"version": v.name, "kind": "system_prompt_change", **change,
                           "examples": examples})
    return {"plants": plants, "causes": causes,
            "deployments": {v.name: spec.deployed_system_prompt(v.name)
                            for v in spec.versions}}


# -- the store ------------------------------------------------------------------------------------
def register_zoo(store, build: ZooBuild, *, force: bool = True) -> dict[str, int]:
    """Register each version of ``build`` in the store and ingest its training data.

    Parents are registered before their children. Notes name the zoo, never what was planted.
    The zoo owns its version names: with ``force`` (the default) a registration of the same name
    from another build is replaced. Registering the same build again changes nothing.

    Returns
    -------
    dict
        Version name -> number of training examples added (0 for those already ingested).

    Raises
    ------
    ZooBuildError
        The store already holds *different* training examples under a version's name (a zoo
        built from another spec): ingestion never replaces examples, so the store would pair the
        new weights with the old data. Nothing is written in that case; use a fresh store.
    """
    from llmrca.ingest import ingest_training_file
    from llmrca.models import register_version

    for version, path in build.training_data.items():
        differing = _differing_training_rows(store, version, path)
        if differing:
            raise ZooBuildError(
                f"store {store.path} already holds {differing} training example(s) of '{version}' "
                f"that differ from {path} (a zoo built from another spec?); training examples "
                f"are never replaced, so register this zoo in a fresh store (--db)")
    ingested: dict[str, int] = {}
    with store.transaction():  # all versions or none
        for version, folder in build.models.items():
            register_version(store, version, str(folder), parent=build.parents.get(version),
                             notes=f"model organism, llmrca zoo {build.spec_hash}", force=force)
            ingested[version] = ingest_training_file(store, build.training_data[version], version)
    return ingested


def _differing_training_rows(store, version: str, path: Path) -> int:
    """How many stored training examples of ``version`` are not lines of ``path``."""
    from llmrca.store.model_versions import training_messages

    stored = training_messages(store, version)
    if not stored:
        return 0
    lines = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            record = json.loads(line)
            lines[record["example_id"]] = record["messages"]
    return sum(1 for example_id, messages in stored.items()
               if messages is None or lines.get(example_id) != messages)
