"""The model-organism zoo: tiny GPT-2 chat models with planted root causes, built offline.

``build_zoo(spec)`` trains every version of a :class:`ZooSpec` deterministically (byte-level BPE
tokenizer with a chat template, GPT-2 under 2M parameters, ``save_pretrained`` safetensors),
writes each version's training data and a ground-truth manifest, runs the behaviour check, and
caches the result by spec hash. ``register_zoo(store, build)`` registers the versions and ingests
their training data. A spec's ``plants`` plant causes of any trigger, request set and behaviour;
``write_planted_incident(build, folder)`` writes an incident bundle sampled from the failing
version.

Importing this package is cheap: torch and transformers load when a build or check runs.
"""

from __future__ import annotations

from llmrca.zoo.spec import (
    DEFAULT_SPEC,
    TEST_SPEC,
    BehaviourTarget,
    ModelShape,
    PlantSpec,
    TrainSchedule,
    VersionSpec,
    ZooSpec,
)

__all__ = [
    "DEFAULT_SPEC",
    "TEST_SPEC",
    "BehaviourTarget",
    "ModelShape",
    "PlantSpec",
    "TrainSchedule",
    "VersionSpec",
    "ZooBehaviourError",
    "ZooBuild",
    "ZooSpec",
    "build_zoo",
    "cached_zoos",
    "classify",
    "load_zoo",
    "register_zoo",
    "write_planted_incident",
    "zoo_root",
]

_LAZY = {
    "ZooBuild": "llmrca.zoo.build", "ZooBehaviourError": "llmrca.zoo.build",
    "build_zoo": "llmrca.zoo.build", "load_zoo": "llmrca.zoo.build",
    "register_zoo": "llmrca.zoo.build", "zoo_root": "llmrca.zoo.build",
    "cached_zoos": "llmrca.zoo.build", "classify": "llmrca.zoo.behaviour",
    "write_planted_incident": "llmrca.zoo.incidents",
}


def __getattr__(name: str):
    if name in _LAZY:
        from importlib import import_module
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'llmrca.zoo' has no attribute {name!r}")
