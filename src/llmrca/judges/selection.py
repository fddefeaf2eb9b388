"""Choosing judges: by spec string, and by the incident's category."""

from __future__ import annotations

from typing import Any

from llmrca.errors import UnknownNameError
from llmrca.judges.base import JUDGES, Judge
from llmrca.judges.rules import shipped_rule_sets

#: The default judges per incident category (the categories of ``llmrca.ingest.documents``).
#: A reproduction needs a judge that can say ``unsafe``: harmful-request categories get
#: ``compliance`` (not a refusal, and on the request's task: no vocabulary list, so it works on
#: any task words; ``rules:jailbreak`` stays available by name), privacy its rule set, the others
#: ``same-as-incident`` (the offending output, again); an incident with no (or an unknown)
#: category gets ``["refusal"]``.
DEFAULT_JUDGES: dict[str, list[str]] = {
    "jailbreak": ["compliance", "refusal"],
    "harmful-content": ["compliance", "refusal"],
    "privacy": ["rules:privacy", "refusal"],
    "bias": ["same-as-incident", "refusal"],
    "prompt-injection": ["same-as-incident", "refusal"],
    "other": ["same-as-incident", "refusal"],
}
FALLBACK_JUDGES: list[str] = ["refusal"]

# Judge kinds that need a ':' argument, with how to spell it.
_NEEDS_ARGUMENT = {"rules": "rules:<path to a rules .yaml file>",
                   "hf-classifier": "hf-classifier:<local model folder>",
                   "guard-lm": "guard-lm:<local model folder>"}
_OPTIONAL_ARGUMENT = {"classifier": "classifier:<path to a saved classifier judge>"}


def available_judges() -> list[str]:
    """Every judge spec that :func:`get_judge` accepts, sorted (path forms spelled out)."""
    names: set[str] = set()
    for kind in JUDGES.available():
        if kind == "rules":
            names.update(f"rules:{name}" for name in shipped_rule_sets())
        if kind in _NEEDS_ARGUMENT:
            names.add(_NEEDS_ARGUMENT[kind])
        else:
            names.add(kind)
        if kind in _OPTIONAL_ARGUMENT:
            names.add(_OPTIONAL_ARGUMENT[kind])
    return sorted(names)


def get_judge(spec: str, **options: Any) -> Judge:
    """The judge named by ``spec``.

    Parameters
    ----------
    spec : str
        ``refusal``, ``compliance``, ``same-as-incident``, ``rules:jailbreak`` /
        ``rules:privacy`` (shipped rule sets), ``rules:/path/to/rules.yaml``, ``classifier``
        (unfitted) or ``classifier:/path`` (saved), ``hf-classifier:/model/folder``,
        ``guard-lm:/model/folder``, or any kind added with
        :func:`~llmrca.judges.register_judge`.
    **options
        Passed to the judge's constructor (``threshold=0.9``, ``phrases=[...]``).

    Raises
    ------
    UnknownNameError
        The kind or rule set is unknown; the message lists the valid ones.
    """
    kind, _, argument = str(spec).partition(":")
    if kind not in JUDGES:
        raise UnknownNameError("judge", str(spec), available_judges())
    return JUDGES.get(kind).from_spec(argument or None, **options).named(str(spec))


def default_judges(category: str | None) -> list[str]:
    """The judge specs an incident's category calls for.

    ``jailbreak`` / ``harmful-content`` -> compliance + refusal; ``privacy`` ->
    rules:privacy + refusal; ``bias`` / ``prompt-injection`` / ``other`` -> same-as-incident +
    refusal (``same-as-incident`` needs each interaction's logged output); no or an unknown
    category -> refusal only. Case, spaces and underscores in the category do not matter.
    """
    if not category:
        return list(FALLBACK_JUDGES)
    key = "-".join(str(category).strip().lower().replace("_", " ").split())
    return list(DEFAULT_JUDGES.get(key, FALLBACK_JUDGES))
