"""Which hypotheses to test: specs from Python or from a bundle's ``hypotheses.yaml``.

The file::

    hypotheses:
      - kind: guardrail_gap            # a registered kind (required)
        name: strict-guardrail         # optional; default: the kind
        min_effect: 0.3                # optional; default: the kind's
        parameters:                    # optional; only the kind's own parameters
          max_false_positive_rate: 0.01
    include_defaults: true             # optional; also test the shipped kinds (default true)

It is read strictly (:mod:`llmrca.documents`): an unknown field or kind, a parameter the kind
does not have, a duplicate name or a bad value fails with the file, the line and the field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmrca.documents import Fields, load_document
from llmrca.errors import InvalidArgumentError

__all__ = ["BUNDLE_FILE", "HypothesisSpec", "default_specs", "load_hypotheses_file"]

#: The file an incident bundle may hold.
BUNDLE_FILE = "hypotheses.yaml"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")


@dataclass(frozen=True)
class HypothesisSpec:
    """A hypothesis to test: a registered kind under a name, with parameters.

    Attributes
    ----------
    kind : str
    name : str
        Default: the kind.
    parameters : dict
    min_effect : float or None
        None: the kind's default.
    """

    kind: str
    name: str = ""
    parameters: Mapping[str, Any] = field(default_factory=dict)
    min_effect: float | None = None

    def __post_init__(self) -> None:
        from llmrca.hypotheses.kinds import HYPOTHESES

        kind = HYPOTHESES.get(self.kind)  # unknown kinds fail with the valid ones
        if not self.name:
            object.__setattr__(self, "name", self.kind)
        object.__setattr__(self, "parameters", kind.resolve(self.parameters))
        if self.min_effect is not None and not 0.0 <= float(self.min_effect) <= 1.0:
            raise InvalidArgumentError(f"min_effect must be in [0, 1]; got {self.min_effect}")

    @property
    def threshold(self) -> float:
        from llmrca.hypotheses.kinds import HYPOTHESES

        return float(self.min_effect if self.min_effect is not None
                     else HYPOTHESES.get(self.kind).min_effect)


def default_specs() -> list[HypothesisSpec]:
    """The shipped kinds with their default parameters, then any other registered kind."""
    from llmrca.hypotheses.kinds import DEFAULT_KINDS, HYPOTHESES

    names = list(DEFAULT_KINDS) + [k for k in HYPOTHESES.available() if k not in DEFAULT_KINDS]
    return [HypothesisSpec(kind=k) for k in names if k in HYPOTHESES]


def load_hypotheses_file(path: str | Path) -> list[HypothesisSpec]:
    """Read a ``hypotheses.yaml`` (module docstring); with ``include_defaults`` (the default)
    the shipped kinds come first, then the file's (a file entry named like a default replaces
    it).

    Raises
    ------
    ValidationError
        With the file, line and field of the first problem.
    """
    from llmrca.hypotheses.kinds import HYPOTHESES

    path = Path(path)
    document = load_document(path)
    root = Fields.of_document(path, document)
    root.only(("hypotheses", "include_defaults"))
    include = root.boolean("include_defaults", default=True)
    specs: list[HypothesisSpec] = []
    seen: dict[str, int | None] = {}
    for item in root.mappings("hypotheses", required=True, nonempty=True):
        item.only(("kind", "name", "min_effect", "parameters"))
        kind = item.string("kind", required=True,
                           expected="a registered hypothesis kind ("
                                    + ", ".join(HYPOTHESES.available()) + ")")
        if kind not in HYPOTHESES:
            raise item.error("kind", "a registered hypothesis kind ("
                             + ", ".join(HYPOTHESES.available()) + ")", kind)
        name = item.string("name", default=kind, pattern=_NAME,
                           expected="a name of letters, digits, '_', '.', ':', '-'")
        if name in seen:
            raise item.error("name", f"a name not used before (line {seen[name]})", name)
        seen[name] = item.line_of("name")
        min_effect = item.number("min_effect")
        if min_effect is not None and not 0.0 <= min_effect <= 1.0:
            raise item.error("min_effect", "a number in [0, 1]", min_effect)
        parameters = item.mapping("parameters")
        values: dict[str, Any] = {}
        if parameters is not None:
            valid = tuple(sorted(HYPOTHESES.get(kind).parameters))
            parameters.only(valid, expected=f"a parameter of {kind} ("
                                            + (", ".join(valid) or "none") + ")")
            values = {str(k): parameters.plain(k) for k in parameters}
        specs.append(HypothesisSpec(kind=kind, name=name, parameters=values,
                                    min_effect=min_effect))
    if include:
        named = {s.name for s in specs}
        specs = [s for s in default_specs() if s.name not in named] + specs
    return specs
