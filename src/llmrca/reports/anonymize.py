"""Mask personal data in everything a run exports (``llmrca run --anonymize``).

Detected and masked: e-mail addresses, phone numbers, API keys and tokens, user/session/customer
ids, pseudonymous id hashes in id columns, and person names that appear next to contact data
(a name in the same sentence as an e-mail address or phone number is learnt, then masked
everywhere, prompts included). Masks are typed placeholders (``[email]``, ``[phone]``,
``[api-key]``, ``[id]``, ``[name]``) so a reader still sees what kind of data was there.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

__all__ = ["PATTERNS", "Anonymizer"]

#: (kind, regex) in the order they are applied.
PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("api-key", re.compile(
        r"\b(?:sk|pk|rk)-[A-Za-z0-9_-]{16,}\b|\bgh[pousr]_[A-Za-z0-9]{20,}\b"
        r"|\bxox[abprs]-[A-Za-z0-9-]{10,}\b|\bAKIA[0-9A-Z]{16}\b|\bAIza[0-9A-Za-z_-]{30,}\b"
        r"|(?i:\b(?:api[_-]?key|secret|token|password)\b\s*[:=]\s*)[^\s,;\"'<>]{6,}")),
    ("email", re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")),
    ("phone", re.compile(
        r"(?<![\w.:-])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{3}\)\s?|\d{3}[\s.-])?\d{3}[\s.-]\d{4}(?![\w:-])")),
    ("id", re.compile(r"\b(?:user|usr|sess|session|customer|cust|acct|account|member)"
                      r"[-_](?=[A-Za-z0-9-]*\d)[A-Za-z0-9][A-Za-z0-9_-]*\b", re.IGNORECASE)),
)
#: Columns whose values are pseudonymous ids of people (masked whole).
ID_COLUMNS = frozenset({"session_hash", "user_hash", "session_id", "user_id", "user", "session"})

_NAME = re.compile(r"\b([A-Z][a-z]+(?:[ -][A-Z][a-z]+){1,2})\b")
_NOT_NAMES = frozenset({"Here", "Sure", "The", "This", "What", "Give", "Tell", "Please", "You",
                        "Pretend", "Explain", "Show", "How", "Why", "When", "Where", "Who"})


class Anonymizer:
    """Masks personal data in strings, DataFrames and nested JSON values.

    ``learn(texts)`` finds names next to contact data first (call it on everything that will be
    masked, so a name masked in an answer is masked in the question too).
    """

    def __init__(self, names: Iterable[str] = ()) -> None:
        self.names: set[str] = set(names)

    def learn(self, texts: Iterable[Any]) -> Anonymizer:
        """Learn person names that share a sentence with an e-mail address or phone number."""
        contact = [p for k, p in PATTERNS if k in ("email", "phone")]
        for text in texts:
            if not isinstance(text, str):
                continue
            for sentence in re.split(r"(?<=[.!?])\s+|\n", text):
                if any(p.search(sentence) for p in contact):
                    for match in _NAME.finditer(sentence):
                        words = match.group(1).split()
                        while words and words[0] in _NOT_NAMES:
                            words = words[1:]
                        if len(words) >= 2:
                            self.names.add(" ".join(words))
        return self

    def mask(self, text: Any) -> Any:
        """``text`` with personal data replaced by ``[kind]``; non-strings unchanged."""
        if not isinstance(text, str) or not text:
            return text
        for kind, pattern in PATTERNS:
            text = pattern.sub(f"[{kind}]", text)
        for name in sorted(self.names, key=len, reverse=True):
            text = re.sub(rf"\b{re.escape(name)}\b", "[name]", text)
            for part in name.split():        # a lone first or last name of a learnt person
                if len(part) > 2:
                    text = re.sub(rf"\b{re.escape(part)}\b", "[name]", text)
        return text

    def mask_frame(self, frame):
        """A copy of a DataFrame with every string cell masked and id columns replaced."""
        out = frame.copy()
        for column in out.columns:
            if str(column) in ID_COLUMNS:
                out[column] = ["[id]" if isinstance(v, str) and v else v for v in out[column]]
            elif out[column].dtype == object or str(out[column].dtype) in ("string", "str"):
                out[column] = [self.mask(v) for v in out[column]]
        return out

    def mask_value(self, value: Any, skip_keys: frozenset[str] = frozenset()) -> Any:
        """Mask every string in nested dicts and lists (keys in ``skip_keys`` are left alone:
        images, for instance)."""
        if isinstance(value, str):
            return self.mask(value)
        if isinstance(value, dict):
            return {k: (v if k in skip_keys else
                        "[id]" if k in ID_COLUMNS and isinstance(v, str) and v else
                        self.mask_value(v, skip_keys)) for k, v in value.items()}
        if isinstance(value, list):
            return [self.mask_value(v, skip_keys) for v in value]
        return value

    @staticmethod
    def strings(value: Any) -> Iterable[str]:
        """Every string in a nested value (to :meth:`learn` from)."""
        if isinstance(value, str):
            yield value
        elif isinstance(value, dict):
            for v in value.values():
                yield from Anonymizer.strings(v)
        elif isinstance(value, list):
            for v in value:
                yield from Anonymizer.strings(v)
