"""The judge interface: one hook per judge, batching and provenance in the base class.

A judge labels one model output ``unsafe``, ``refusal`` or ``safe`` with a score in [0, 1]. A
subclass implements :meth:`Judge.judge_one`; :meth:`Judge.judge` runs it over many samples in
batches and returns a DataFrame with :data:`JUDGEMENT_COLUMNS`, each row carrying the judge's name
and the hash of its configuration, so a label can always be traced to the rules that produced it.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import unicodedata
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from llmrca.errors import JudgeConfigError
from llmrca.registry import Registry

#: The labels a judge may give.
LABELS: tuple[str, ...] = ("unsafe", "refusal", "safe")

#: Columns of the DataFrame :meth:`Judge.judge` returns (and the ``judgements`` table stores).
JUDGEMENT_COLUMNS: tuple[str, ...] = (
    "sample_id", "judge", "judge_config_hash", "label", "score", "details")

#: Context keys a judge may read: the replayed prompt, the incident's offending output, its category.
CONTEXT_KEYS: tuple[str, ...] = ("prompt", "incident_output", "category")

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "\u2032": "'"})
_SPACE = re.compile(r"\s+")


def normalise_text(text: str | None) -> str:
    """Text as judges compare it: NFKC, case-folded, straight apostrophes, one space between words."""
    if not text:
        return ""
    text = unicodedata.normalize("NFKC", str(text)).translate(_APOSTROPHES).casefold()
    return _SPACE.sub(" ", text).strip()


def text_id(text: str) -> str:
    """A content-hash id for a sample given as bare text (``t:`` + 16 hex digits)."""
    return "t:" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class Judgement:
    """One judge's verdict on one output.

    Attributes
    ----------
    label : str
        ``unsafe``, ``refusal`` or ``safe``.
    score : float
        The judge's confidence in ``label``, in [0, 1] (deterministic rules give 1.0; see each
        judge for its raw evidence in ``details``).
    details : dict
        Why: the matched rule or phrase, a similarity, class probabilities. JSON-serialisable.
    """

    label: str
    score: float = 1.0
    details: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.label not in LABELS:
            raise JudgeConfigError(f"judgement label {self.label!r}; valid: {', '.join(LABELS)}")
        if not 0.0 <= float(self.score) <= 1.0:
            raise JudgeConfigError(f"judgement score {self.score!r}; expected a number in [0, 1]")


class Judge(ABC):
    """Base class of judges (template method: subclasses implement :meth:`judge_one`).

    Class attributes
    ----------------
    kind : str
        The registry name of the judge type (``refusal``, ``rules``...).
    """

    kind: ClassVar[str] = "judge"
    _name: str | None = None

    # -- the hook ----------------------------------------------------------------------------
    @abstractmethod
    def judge_one(self, output: str, context: Mapping[str, Any]) -> Judgement:
        """Label one output.

        Parameters
        ----------
        output : str
            The model output to judge.
        context : mapping
            ``prompt``, ``incident_output`` and ``category`` when known (see :data:`CONTEXT_KEYS`).
        """

    def judge_batch(self, outputs: list[str], contexts: list[Mapping[str, Any]]) -> list[Judgement]:
        """Label a batch; judges that vectorise (classifiers) override this, others need not."""
        return [self.judge_one(o, c) for o, c in zip(outputs, contexts)]

    # -- identity and provenance -------------------------------------------------------------
    @property
    def name(self) -> str:
        """The name written in results: how :func:`~llmrca.judges.get_judge` was asked for it."""
        return self._name or self.kind

    def named(self, name: str) -> Judge:
        """Set the name this judge writes in its results; returns ``self``."""
        self._name = name
        return self

    def config(self) -> dict[str, Any]:
        """Everything that decides this judge's labels (phrases, rules, threshold, training data)."""
        return {}

    @property
    def config_hash(self) -> str:
        """16 hex digits of SHA-256 over the judge kind and :meth:`config` (canonical JSON)."""
        blob = json.dumps({"kind": self.kind, "config": self.config()}, sort_keys=True,
                          ensure_ascii=False, default=str)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]

    @classmethod
    def from_spec(cls, argument: str | None, **options: Any) -> Judge:
        """Build the judge a spec such as ``refusal`` or ``rules:privacy`` names."""
        if argument:
            raise JudgeConfigError(f"judge '{cls.kind}' takes no ':' argument, got {argument!r}")
        return cls(**options)

    # -- the template method -----------------------------------------------------------------
    def judge(self, samples: Any, context: Mapping[str, Any] | None = None, *,
              batch_size: int = 256):
        """Judge many samples; returns a DataFrame with :data:`JUDGEMENT_COLUMNS`.

        Parameters
        ----------
        samples : DataFrame, iterable of str, or iterable of mappings
            Each sample has an ``output``; optionally a ``sample_id`` (else a content hash of the
            output) and per-sample context columns ``prompt``, ``incident_output``, ``category``.
        context : mapping, optional
            Context shared by every sample (per-sample values win).
        batch_size : int
            Samples handed to :meth:`judge_batch` at a time.

        Returns
        -------
        pandas.DataFrame
            One row per sample: ``sample_id, judge, judge_config_hash, label, score, details``
            (``details`` holds dicts). ``attrs["judge_config"]`` holds the configuration.
        """
        import pandas as pd

        if batch_size < 1:
            raise JudgeConfigError(f"batch_size {batch_size!r}; expected a whole number >= 1")
        ids, outputs, contexts = _unpack(samples, dict(context or {}))
        results: list[Judgement] = []
        for start in range(0, len(outputs), batch_size):
            end = start + batch_size
            batch = self.judge_batch(outputs[start:end], contexts[start:end])
            if len(batch) != len(outputs[start:end]):
                raise JudgeConfigError(f"judge '{self.name}' returned {len(batch)} judgements for "
                                       f"{len(outputs[start:end])} samples")
            results.extend(batch)
        config_hash = self.config_hash
        frame = pd.DataFrame({
            "sample_id": ids,
            "judge": [self.name] * len(ids),
            "judge_config_hash": [config_hash] * len(ids),
            "label": [r.label for r in results],
            "score": [float(r.score) for r in results],
            "details": [dict(r.details) for r in results],
        }, columns=list(JUDGEMENT_COLUMNS))
        frame.attrs["judge_config"] = {self.name: self.config()}
        return frame

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, config_hash={self.config_hash!r})"


def _unpack(samples: Any, shared: dict[str, Any]):
    """``(ids, outputs, contexts)`` from a DataFrame, strings or mappings."""
    if hasattr(samples, "to_dict") and hasattr(samples, "columns"):
        if "output" not in samples.columns:
            raise JudgeConfigError("samples DataFrame has no 'output' column; columns: "
                                   + ", ".join(map(str, samples.columns)))
        records: Iterable[Any] = samples.to_dict("records")
    elif isinstance(samples, str):
        records = [samples]
    else:
        records = samples
    ids, outputs, contexts = [], [], []
    for record in records:
        if isinstance(record, str):
            record = {"output": record}
        elif not isinstance(record, Mapping):
            raise JudgeConfigError(f"a sample must be a string or a mapping with 'output', got "
                                   f"{type(record).__name__}")
        output = _present(record.get("output"))
        output = "" if output is None else str(output)
        sample_id = _present(record.get("sample_id"))
        ids.append(str(sample_id) if sample_id is not None else text_id(output))
        outputs.append(output)
        context = dict(shared)
        for key in CONTEXT_KEYS:
            value = _present(record.get(key))
            if value is not None:
                context[key] = value
        contexts.append(context)
    return ids, outputs, contexts


def _present(value: Any) -> Any:
    """``None`` for missing values (None, NaN, pandas NA), else the value."""
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if type(value).__name__ == "NAType":  # pandas.NA, without importing pandas
        return None
    return value


#: The judge types, by kind. Add one with :func:`register_judge`.
JUDGES: Registry[type[Judge]] = Registry("judge")


def register_judge(cls: type[Judge]) -> type[Judge]:
    """Class decorator: register a judge type under its ``kind``."""
    JUDGES.register(cls.kind, cls)
    return cls
