"""The parameters every workbench notebook takes, typed and validated once.

The notebooks' ``parameters`` cell declares the same names with the same types and defaults;
:func:`RunParameters.from_mapping` checks values (types, ranges, the incident id's shape) before
any notebook starts, so papermill only ever injects Python literals of the right type.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from llmrca.errors import InvalidArgumentError

__all__ = ["PARAMETER_DOCS", "RunParameters"]

_INCIDENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

#: One line per parameter: what it means (the notebooks' parameter comments say the same).
PARAMETER_DOCS: dict[str, str] = {
    "incident_id": "the incident to investigate",
    "store_path": "store file; '' = $LLMRCA_DB or ./.llmrca/llmrca.duckdb",
    "versions": "model versions to replay; [] = the deployed version and its predecessor",
    "samples": "samples per interaction and version in replays",
    "seed": "run seed; every sample's seed derives from it",
    "max_new_tokens": "tokens generated at most per replayed sample",
    "output_dir": "where results, figures and the report go; '' = reports/<incident>/manual",
    "anonymize": "mask personal data (ids, emails, phone numbers, keys, names) in what is shown",
}


@dataclass(frozen=True)
class RunParameters:
    """Parameters of one workbench run (every notebook gets all of them).

    Attributes mirror :data:`PARAMETER_DOCS`.
    """

    incident_id: str
    store_path: str = ""
    versions: tuple[str, ...] = ()
    samples: int = 20
    seed: int = 0
    max_new_tokens: int = 32
    output_dir: str = ""
    anonymize: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.incident_id, str) or not _INCIDENT_ID.fullmatch(self.incident_id):
            raise InvalidArgumentError(
                f"incident_id {self.incident_id!r}: letters, digits, '.', '_' or '-' (at most 64)")
        for name in ("store_path", "output_dir"):
            if not isinstance(getattr(self, name), str):
                raise InvalidArgumentError(f"{name} must be a string (a path), got "
                                           f"{type(getattr(self, name)).__name__}")
        versions = self.versions
        if isinstance(versions, str) or not all(isinstance(v, str) and v for v in versions):
            raise InvalidArgumentError(f"versions must be a list of version names, got "
                                       f"{versions!r}")
        object.__setattr__(self, "versions", tuple(versions))
        if len(set(self.versions)) != len(self.versions):
            raise InvalidArgumentError(f"versions must be distinct, got {list(self.versions)}")
        for name, low in (("samples", 1), ("seed", 0), ("max_new_tokens", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise InvalidArgumentError(f"{name} must be a whole number >= {low}, got "
                                           f"{value!r}")
        if not isinstance(self.anonymize, bool):
            raise InvalidArgumentError(f"anonymize must be true or false, got {self.anonymize!r}")

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> RunParameters:
        """Build from a mapping (a notebook's parameters); unknown names go to ``extra``."""
        known = {f.name for f in fields(cls)} - {"extra"}
        return cls(**{k: v for k, v in values.items() if k in known},
                   extra={k: v for k, v in values.items() if k not in known})

    def notebook_parameters(self) -> dict[str, Any]:
        """What papermill injects: plain Python values (lists, not tuples), extras included."""
        values = asdict(self)
        extra = values.pop("extra")
        values["versions"] = list(self.versions)
        return {**values, **extra}
