"""What a replay is: :class:`ReplayConfig`, its identity (hashed into the run id) and its bounds."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from llmrca.errors import InvalidArgumentError
from llmrca.replay.decoding import Decoding
from llmrca.replay.prompts import Variant

__all__ = ["MAX_PLANNED_SAMPLES", "SEED_RANGE", "TRUNCATION_POLICIES", "ReplayConfig",
           "max_planned_samples"]

#: Default bound on samples planned by one call (samples x interactions x variants x versions).
#: Each planned sample holds its rendered prompt and key in memory before anything runs; a
#: million is about a gigabyte. Override with ``max_planned=`` / ``--max-planned`` or
#: ``LLMRCA_MAX_PLANNED_SAMPLES``.
MAX_PLANNED_SAMPLES = 200_000
#: Run seeds are stored as BIGINT and hashed into per-sample seeds: ``0 <= seed < 2**63``.
SEED_RANGE = (0, 2**63 - 1)
#: ``truncate``: cut over-long prompts by the policy in docs/replay.md; ``refuse``: raise
#: :class:`~llmrca.replay.prompts.PromptTooLongError`.
TRUNCATION_POLICIES = ("truncate", "refuse")

#: Keyword arguments :meth:`ReplayConfig.build` takes (the old ``replay_incident`` ones).
BUILD_KEYS = ("samples", "temperature", "top_p", "max_new_tokens", "seed", "variants", "judges",
              "backend", "no_truncate", "truncation")


def max_planned_samples(override: int | None = None) -> int:
    """The plan bound in force: ``override``, else ``LLMRCA_MAX_PLANNED_SAMPLES``, else
    :data:`MAX_PLANNED_SAMPLES`."""
    if override is not None:
        value: Any = override
    else:
        value = os.environ.get("LLMRCA_MAX_PLANNED_SAMPLES", MAX_PLANNED_SAMPLES)
    try:
        bound = int(value)
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"max planned samples must be an integer; got {value!r}") \
            from None
    if bound < 1:
        raise InvalidArgumentError(f"max planned samples must be >= 1; got {bound}")
    return bound


def _parse_variants(variants: Any) -> tuple[Variant, ...]:
    if isinstance(variants, (str, Variant)):
        variants = [variants]
    parsed = [Variant.parse(v) for v in variants]
    if not any(v.kind == "original" for v in parsed):
        # Every variant is paired with the original for McNemar; replay it too.
        parsed.insert(0, Variant("original"))
    seen, unique = set(), []
    for v in parsed:
        if v.name not in seen:
            seen.add(v.name)
            unique.append(v)
    return tuple(unique)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class ReplayConfig:
    """Everything that decides a replay's results, shared by ``replay_incident``,
    ``compare_versions`` and the CLI.

    Execution options that do not change results (batch size, chunk size, progress bar,
    device and dtype beyond the engine they imply) are not part of it: samples are
    batch-invariant.

    Attributes
    ----------
    samples : int
        Samples per (interaction, variant, version); >= 1.
    decoding : Decoding
        Temperature (0: greedy), top-p, max new tokens.
    seed : int
        Run seed, ``0 <= seed < 2**63``; every sample's seed derives from it.
    variants : tuple of Variant
        Prompt perturbations; ``original`` is always included, first.
    judges : tuple or None
        Judge specs (``"rules:jailbreak"``) or judge objects; None: the incident category's
        defaults; ``()``: no judging (no rates). The judges' names and configuration hashes
        are part of the run id once resolved.
    backend : str
        Replay backend name (:data:`~llmrca.replay.backends.BACKENDS`).
    truncation : str
        ``truncate`` or ``refuse`` (see :data:`TRUNCATION_POLICIES`).
    """

    samples: int = 20
    decoding: Decoding = field(default_factory=Decoding)
    seed: int = 0
    variants: tuple[Variant, ...] = (Variant("original"),)
    judges: tuple[Any, ...] | None = None
    backend: str = "transformers"
    truncation: str = "truncate"

    def __post_init__(self) -> None:
        if not _is_int(self.samples) or self.samples < 1:
            raise InvalidArgumentError(f"samples must be an integer >= 1; got {self.samples!r}")
        if not _is_int(self.seed) or not SEED_RANGE[0] <= self.seed <= SEED_RANGE[1]:
            raise InvalidArgumentError(f"seed must be an integer in [0, 2**63 - 1]; got "
                                       f"{self.seed!r}")
        if not isinstance(self.decoding, Decoding):
            raise InvalidArgumentError("decoding must be a Decoding")
        if self.truncation not in TRUNCATION_POLICIES:
            raise InvalidArgumentError(f"truncation must be one of {', '.join(TRUNCATION_POLICIES)}"
                                       f"; got {self.truncation!r}")
        if not isinstance(self.backend, str) or not self.backend:
            raise InvalidArgumentError(f"backend must be a name; got {self.backend!r}")
        object.__setattr__(self, "variants", _parse_variants(self.variants))
        if self.judges is not None:
            if isinstance(self.judges, str):
                object.__setattr__(self, "judges", (self.judges,))
            else:
                object.__setattr__(self, "judges", tuple(self.judges))

    @classmethod
    def build(cls, *, samples: int = 20, temperature: float = 1.0, top_p: float = 1.0,
              max_new_tokens: int = 32, seed: int = 0, variants: Any = ("original",),
              judges: Sequence[Any] | None = None, backend: str = "transformers",
              no_truncate: bool = False, truncation: str | None = None) -> ReplayConfig:
        """A config from the flat keyword arguments ``replay_incident`` has always taken."""
        return cls(samples=samples,
                   decoding=Decoding(temperature=temperature, top_p=top_p,
                                     max_new_tokens=max_new_tokens),
                   seed=seed, variants=variants,
                   judges=None if judges is None else tuple(judges), backend=backend,
                   truncation=truncation or ("refuse" if no_truncate else "truncate"))

    def replace(self, **changes: Any) -> ReplayConfig:
        """A copy with some of :data:`BUILD_KEYS` changed (``temperature=0``, ``seed=3``)."""
        unknown = sorted(set(changes) - set(BUILD_KEYS))
        if unknown:
            raise InvalidArgumentError(f"unknown replay option(s) {', '.join(unknown)}; valid: "
                                       f"{', '.join(BUILD_KEYS)}")
        current: dict[str, Any] = {
            "samples": self.samples, "temperature": self.decoding.temperature,
            "top_p": self.decoding.top_p, "max_new_tokens": self.decoding.max_new_tokens,
            "seed": self.seed, "variants": self.variants, "judges": self.judges,
            "backend": self.backend, "truncation": self.truncation}
        if "no_truncate" in changes and "truncation" not in changes:
            changes["truncation"] = "refuse" if changes.pop("no_truncate") else "truncate"
        changes.pop("no_truncate", None)
        current.update(changes)
        return ReplayConfig.build(**current)

    @property
    def no_truncate(self) -> bool:
        """True when over-long prompts are refused rather than truncated."""
        return self.truncation == "refuse"

    @property
    def variant_names(self) -> list[str]:
        return [v.name for v in self.variants]

    def parameters(self, interaction_ids: Sequence[str],
                   judges: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """The ``parameters`` recorded in ``replay_runs`` and hashed into the run id.

        ``judges`` are the resolved judges (``{"name", "config_hash"}``) — specs alone would not
        say which rules or threshold ran.
        """
        return {"samples": int(self.samples), "decoding": self.decoding.to_dict(),
                "variants": self.variant_names, "interaction_ids": list(interaction_ids),
                "no_truncate": self.no_truncate, "backend": self.backend,
                "judges": [dict(j) for j in judges]}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (judge objects by name)."""
        out = dataclasses.asdict(self)
        out["decoding"] = self.decoding.to_dict()
        out["variants"] = self.variant_names
        out["judges"] = None if self.judges is None else [
            j if isinstance(j, str) else str(getattr(j, "name", type(j).__name__))
            for j in self.judges]
        return out

    @classmethod
    def from_parameters(cls, parameters: dict[str, Any], seed: int) -> ReplayConfig:
        """The config a stored run was made with (judges by recorded name)."""
        decoding = parameters.get("decoding", {})
        judges = parameters.get("judges")
        return cls.build(samples=int(parameters["samples"]),
                         temperature=float(decoding.get("temperature", 1.0)),
                         top_p=float(decoding.get("top_p", 1.0)),
                         max_new_tokens=int(decoding.get("max_new_tokens", 32)), seed=int(seed),
                         variants=parameters.get("variants", ["original"]),
                         judges=None if judges is None else [j["name"] for j in judges],
                         backend=str(parameters.get("backend", "transformers")),
                         no_truncate=bool(parameters.get("no_truncate", False)))
