"""Personal identifiers: stored only as salted hashes, at any depth of a record."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def salted_hash(salt: str, value: str | None) -> str | None:
    """``sha256(salt || value)`` in hex, the construction the SQL side uses too."""
    if value is None:
        return None
    return hashlib.sha256((salt + value).encode("utf-8")).hexdigest()


def scrub_personal(value: Any, salt: str, personal: frozenset[str]) -> Any:
    """``value`` with every personal key, at any depth, replaced by its salted hash."""
    if isinstance(value, dict):
        return {key: (salted_hash(salt, item if isinstance(item, str)
                                  else json.dumps(item, default=str))
                      if key in personal and item is not None
                      else scrub_personal(item, salt, personal))
                for key, item in value.items()}
    if isinstance(value, list):
        return [scrub_personal(item, salt, personal) for item in value]
    return value
