"""Text that cannot be stored: lone UTF-16 surrogates, and where in a record they sit.

JSON lets a string hold ``"\\ud83d"`` on its own (half of an emoji's surrogate pair, as scraped
chat exports often cut them); Python's ``json`` decodes it to a lone surrogate, which is not
Unicode text: it cannot be encoded as UTF-8, so it can be neither hashed nor stored. Bytes that
are not UTF-8, read with ``errors="surrogateescape"``, come out as lone surrogates too.

llmrca **refuses** such a value rather than replacing it (with U+FFFD): an investigation tool must
not change evidence silently. The record is rejected with its file, line and the dotted path of
the value (docs/formats.md, "Text that cannot be stored").

This module has no llmrca imports, so both the readers (:mod:`llmrca.ingest.formats`) and the
SQL log ingestion (:mod:`llmrca.store.ingest_writes`, :func:`sql_unencodable_or`) can use it.
"""

from __future__ import annotations

import itertools
import json
import re
from typing import Any

import duckdb

#: What a record with a lone surrogate was expected to hold (the error's ``expected``).
UNENCODABLE_EXPECTED = ("text that is valid Unicode (a lone UTF-16 surrogate such as \\ud83d, "
                        "or bytes that are not UTF-8, cannot be stored; llmrca refuses rather "
                        "than replaces it)")

_SURROGATE = re.compile("[\ud800-\udfff]")
#: A surrogate as a JSON escape (\uD800-\uDFFF), the way it sits in JSON text before decoding.
_ESCAPED = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
#: The value kinds of an OTLP ``AnyValue``; a value is named by its attribute's key, as the
#: otel-genai adapter names it in its own errors.
_ANY_VALUE = ("stringValue", "intValue", "doubleValue", "boolValue", "bytesValue", "arrayValue",
              "kvlistValue")


def may_hold_surrogate(text: str) -> bool:
    """Cheap test of raw text (a JSONL line) before the exact walk: a surrogate, or its escape."""
    return bool(_SURROGATE.search(text) or _ESCAPED.search(text))


def first_lone_surrogate(value: Any, path: str = "") -> tuple[str, str] | None:
    """``(dotted path, offending text)`` of the first string (value or key) holding a lone
    surrogate, or None.

    A string that itself holds JSON text with an escaped surrogate (OTel attributes carry the
    messages as JSON text) is searched inside, its path continued into the decoded value. OTLP
    key/value lists are named by key (``attributes.gen_ai.input.messages.0.parts.0.content``).
    """
    if isinstance(value, str):
        if _SURROGATE.search(value):
            return path, value
        if _ESCAPED.search(value) and value.lstrip()[:1] in ("[", "{"):
            try:
                decoded = json.loads(value)
            except ValueError:
                return None
            return first_lone_surrogate(decoded, path)
        return None
    if isinstance(value, dict):
        unwrapped = _any_value(value)
        if unwrapped is not None:
            return first_lone_surrogate(unwrapped, path)
        for key, item in value.items():
            here = _join(path, str(key))
            if isinstance(key, str) and _SURROGATE.search(key):
                return here, key
            found = first_lone_surrogate(item, here)
            if found:
                return found
        return None
    if isinstance(value, list):
        for i, item in enumerate(value):
            if _is_key_value(item):
                here = _join(path, item["key"])
                found = (first_lone_surrogate(item["key"], here)
                         or first_lone_surrogate(item.get("value"), here))
            else:
                found = first_lone_surrogate(item, _join(path, str(i)))
            if found:
                return found
    return None


def lone_surrogate_field(raw: str | None) -> str | None:
    """The dotted path of the first lone surrogate in a line of JSON text, ``""`` for the top
    level, or None when the line has none (or is not JSON). For SQL: a DuckDB function."""
    if not raw or not may_hold_surrogate(raw):
        return None
    try:
        parsed = json.loads(raw)
    except ValueError:
        return None
    found = first_lone_surrogate(parsed)
    return None if found is None else found[0]


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _is_key_value(item: Any) -> bool:
    """An OTLP ``KeyValue``: ``{"key": ..., "value": {<one AnyValue kind>: ...}}``."""
    return (isinstance(item, dict) and isinstance(item.get("key"), str)
            and isinstance(item.get("value"), dict)
            and (item["value"] == {} or _any_value(item["value"]) is not None
                 or set(item["value"]) <= set(_ANY_VALUE)))


def _any_value(value: dict) -> Any:
    """The content of an OTLP ``AnyValue`` (one ``*Value`` key), or None when it is not one."""
    if len(value) != 1:
        return None
    (kind, inner), = value.items()
    if kind not in _ANY_VALUE:
        return None
    if kind in ("arrayValue", "kvlistValue") and isinstance(inner, dict):
        return inner.get("values")
    return inner


def sql_unencodable_or(con: duckdb.DuckDBPyConnection, otherwise: str) -> str:
    """SQL for the error of a line ``raw`` that DuckDB found not to be JSON: when its fault is a
    lone surrogate (DuckDB's JSON calls ``"\\ud83d"`` malformed), a struct ``{field, expected,
    got}`` naming the value that holds it, else ``otherwise`` (SQL of the same struct type).

    The exact path comes from :func:`lone_surrogate_field`, made a function of ``con``; it runs
    only on lines that are not JSON and hold a surrogate escape, so good lines cost nothing.
    """
    func = _surrogate_function(con)
    expected = "'" + UNENCODABLE_EXPECTED.replace("'", "''") + "'"
    return (r"CASE WHEN regexp_matches(raw, '\\u[dD][89a-fA-F]') AND "
            f"{func}(raw) IS NOT NULL THEN {{'field': nullif({func}(raw), ''), "
            f"'expected': {expected}, 'got': left(raw, 80)}} ELSE {otherwise} END")


_udf_names = itertools.count()


def _surrogate_function(con: duckdb.DuckDBPyConnection) -> str:
    """The name of :func:`lone_surrogate_field` as a function of ``con``, made when missing.

    A function made in a transaction that rolls back is gone from the catalog while DuckDB's
    Python side still holds its name, so a new one gets a new name.
    """
    found = con.execute("SELECT function_name FROM duckdb_functions() WHERE function_name "
                        r"LIKE 'llmrca\_lone\_surrogate\_%' ESCAPE '\' LIMIT 1").fetchall()
    if found:
        return found[0][0]
    name = f"llmrca_lone_surrogate_{next(_udf_names)}"
    # null_handling as the string "special": every duckdb>=1.1 accepts it, while the enum the
    # stubs ask for moved (duckdb.functional in 1.1, duckdb.func in 2.x, which has no
    # duckdb.functional), so no one import of it works across the supported versions.
    con.create_function(name, lone_surrogate_field, ["VARCHAR"],  # type: ignore[call-overload]
                        "VARCHAR", null_handling="special")
    return name
