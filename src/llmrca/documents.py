"""Strict, line-aware reading of the small YAML and JSON documents llmrca takes from users.

``incident.yaml`` and ``models.yaml`` (ingest), judge rule files and zoo specs all go through
:func:`load_document` and are checked with :class:`Fields`, so every error is a
:class:`~llmrca.errors.ValidationError` with file, line and dotted field (``versions.2.parent``).
This module sits below every other layer: it imports nothing of llmrca but the errors.

The rules (docs/formats.md, "YAML and JSON documents"):

* UTF-8 only (a byte-order mark is allowed); one document per file.
* Plain scalars resolve by a narrow core schema, not YAML 1.1: ``null``/``~``/empty, ``true``/
  ``false``, decimal integers without leading zeros, decimal floats (and ``.inf``/``.nan``).
  Everything else is a string as written: ``0010``, ``0x1F``, ``12:30:00``, ``yes``, ``on``,
  ``2026-10-12``. A field read as a string gets the scalar's source text, so ``id: 10`` is ``"10"``
  and ``revision: 1.50`` is ``"1.50"``.
* Keys are strings as written; a key used twice in one mapping is an error naming both lines.
* Anchors and aliases (``&a``, ``*a``, so also ``<<`` merges) are refused where they are read, so
  an alias bomb fails at its first anchor, before anything is expanded; tags other than ``!!str``,
  ``!!map`` and ``!!seq`` are refused.
* JSON documents give the same tree: duplicate keys are an error, lines are kept.
"""

from __future__ import annotations

import json
import os
import re
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from json import decoder as json_decoder
from json.decoder import scanstring as _scanstring  # type: ignore[attr-defined]  # see _load_json
from json.scanner import py_make_scanner as _py_make_scanner  # type: ignore[attr-defined]
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal, TypeVar, overload

import yaml

from llmrca.errors import ValidationError

__all__ = ["DocumentList", "DocumentMapping", "Fields", "line_of", "load_document",
           "parse_document", "plain"]


class DocumentMapping(dict):
    """A mapping read from a document: a plain ``dict`` that also knows where it was written.

    Attributes
    ----------
    line : int or None
        1-based line where the mapping starts.
    lines : dict
        Line of each key.
    texts : dict
        Source text of each value that was a non-string scalar (``10``, ``1.50``, ``true``).
    """

    def __init__(self, line: int | None = None):
        super().__init__()
        self.line = line
        self.lines: dict[str, int] = {}
        self.texts: dict[str, str] = {}


class DocumentList(list):
    """A list read from a document; ``line``, and ``lines``/``texts`` by index (see above)."""

    def __init__(self, line: int | None = None):
        super().__init__()
        self.line = line
        self.lines: list[int | None] = []
        self.texts: list[str | None] = []


# -- loading -------------------------------------------------------------------------------------
def load_document(path: str | os.PathLike[str]) -> Any:
    """Read a YAML or JSON document (JSON for a ``.json`` suffix) with the rules above.

    Returns
    -------
    DocumentMapping, DocumentList, a scalar, or None for an empty document.

    Raises
    ------
    ValidationError
        Unreadable file, bytes that are not UTF-8, bad syntax, a duplicate key, an anchor, alias
        or tag; with the file and line.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ValidationError(str(path), None, None, "a readable YAML or JSON file",
                              exc.strerror or str(exc)) from None
    return parse_document(data, str(path), json_syntax=path.suffix.lower() == ".json")


def parse_document(data: bytes | str, file: str = "<string>", *,
                   json_syntax: bool = False) -> Any:
    """Parse a document already in memory; ``file`` is only used to name it in errors."""
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            bom = 3 if data.startswith(b"\xef\xbb\xbf") else 0
            line = data[:exc.start + bom].count(b"\n") + 1
            raise ValidationError(file, line, None, "UTF-8 text",
                                  data[exc.start + bom:exc.start + bom + 4]) from None
    else:
        text = data.removeprefix("\ufeff")
    try:
        return _load_json(text, file) if json_syntax else _load_yaml(text, file)
    except RecursionError:
        raise ValidationError(file, None, None, "a document nested less deeply") from None


# -- YAML --------------------------------------------------------------------------------------
_PLAIN = "llmrca:plain"          # the tag this loader gives an untagged plain scalar
_STR, _MAP, _SEQ = (yaml.resolver.BaseResolver.DEFAULT_SCALAR_TAG,
                    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
                    yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG)
_NULLS = frozenset({"", "~", "null", "Null", "NULL"})
_BOOLS = {"true": True, "True": True, "TRUE": True, "false": False, "False": False,
          "FALSE": False}
_INT = re.compile(r"[-+]?(?:0|[1-9][0-9]*)")
_FLOAT = re.compile(r"[-+]?(?:\.[0-9]+|(?:0|[1-9][0-9]*)(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?")
_SPECIAL_FLOATS = {".inf": float("inf"), ".Inf": float("inf"), ".INF": float("inf"),
                   "+.inf": float("inf"), "+.Inf": float("inf"), "+.INF": float("inf"),
                   "-.inf": float("-inf"), "-.Inf": float("-inf"), "-.INF": float("-inf"),
                   ".nan": float("nan"), ".NaN": float("nan"), ".NAN": float("nan")}


class _Refused(yaml.MarkedYAMLError):
    """Something this loader does not accept (alias, anchor, tag), at its place in the text."""


class _StrictComposer(yaml.composer.Composer):
    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            raise _Refused(None, None, f"no YAML aliases (*{event.anchor}); write the value out",
                           event.start_mark)
        if getattr(event, "anchor", None) is not None:
            raise _Refused(None, None, f"no YAML anchors (&{event.anchor}); write the value out",
                           event.start_mark)
        return super().compose_node(parent, index)


class _PlainResolver(yaml.resolver.BaseResolver):
    """No YAML 1.1 implicit types: an untagged plain scalar is marked to be resolved here."""

    # Class attributes, as on BaseResolver; its stubs declare them without ClassVar, and mypy
    # refuses a ClassVar over that, so ruff's ClassVar rule is silenced here.
    yaml_implicit_resolvers: dict[Any, Any] = {}  # noqa: RUF012
    yaml_path_resolvers: dict[Any, Any] = {}  # noqa: RUF012

    def resolve(self, kind, value, implicit):
        if kind is yaml.ScalarNode and implicit[0]:
            return _PLAIN
        return super().resolve(kind, value, implicit)


class _StrictLoader(yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser,
                    _StrictComposer, _PlainResolver):
    def __init__(self, stream: str):
        yaml.reader.Reader.__init__(self, stream)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)
        _StrictComposer.__init__(self)
        _PlainResolver.__init__(self)


def _load_yaml(text: str, file: str) -> Any:
    loader = None
    try:
        loader = _StrictLoader(text)
        node = loader.get_single_node()
    except yaml.reader.ReaderError as exc:
        line = text[:exc.position].count("\n") + 1
        raise ValidationError(file, line, None, f"valid YAML text ({exc.reason})",
                              chr(exc.character) if isinstance(exc.character, int)
                              else exc.character) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or str(exc)
        expected = problem if isinstance(exc, _Refused) else f"valid YAML ({problem})"
        raise ValidationError(file, mark.line + 1 if mark else None, None, expected) from None
    except yaml.YAMLError as exc:
        raise ValidationError(file, None, None, f"valid YAML ({exc})") from None
    finally:
        if loader is not None:
            loader.dispose()
    return None if node is None else _build(node, file, "")


def _scalar(node: yaml.ScalarNode, file: str, path: str) -> Any:
    if node.tag == _STR:
        return node.value
    if node.tag != _PLAIN:
        raise ValidationError(file, node.start_mark.line + 1, path or None,
                              "no YAML tags other than !!str, !!map, !!seq", node.tag)
    text = node.value
    if text in _NULLS:
        return None
    if text in _BOOLS:
        return _BOOLS[text]
    if _INT.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text):
        return float(text)
    if text in _SPECIAL_FLOATS:
        return _SPECIAL_FLOATS[text]
    return text


def _build(node: yaml.Node, file: str, path: str) -> Any:
    line = node.start_mark.line + 1
    if isinstance(node, yaml.ScalarNode):
        return _scalar(node, file, path)
    if isinstance(node, yaml.SequenceNode):
        if node.tag != _SEQ:
            raise ValidationError(file, line, path or None, "no YAML tags other than !!seq",
                                  node.tag)
        out = DocumentList(line)
        for index, item in enumerate(node.value):
            out.append(_build(item, file, _join(path, index)))
            out.lines.append(item.start_mark.line + 1)
            out.texts.append(item.value if isinstance(item, yaml.ScalarNode) else None)
        return out
    if node.tag != _MAP:
        raise ValidationError(file, line, path or None, "no YAML tags other than !!map", node.tag)
    mapping = DocumentMapping(line)
    for key_node, value_node in node.value:
        key_line = key_node.start_mark.line + 1
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag not in (_STR, _PLAIN):
            raise ValidationError(file, key_line, path or None, "plain keys (a name)",
                                  getattr(key_node, "value", None))
        key = key_node.value
        if key in mapping.lines:
            raise _duplicate(file, path, key, mapping.lines[key], key_line)
        mapping.lines[key] = key_line
        mapping[key] = _build(value_node, file, _join(path, key))
        if isinstance(value_node, yaml.ScalarNode):
            mapping.texts[key] = value_node.value
    return mapping


def _duplicate(file: str, path: str, key: str, first: int | None,
               second: int | None) -> ValidationError:
    return ValidationError(file, second, _join(path, key),
                           f"each key once in a mapping ('{key}' is already on line {first})",
                           key)


def _join(path: str, step: str | int) -> str:
    return f"{path}.{step}" if path else str(step)


# -- JSON --------------------------------------------------------------------------------------
_JSON_CONSTANTS = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}


def _load_json(text: str, file: str) -> Any:
    newlines = [m.start() for m in re.finditer("\n", text)]

    def line_at(pos: int) -> int:
        return bisect_left(newlines, pos) + 1

    duplicates: list[tuple[DocumentMapping, str, int, int]] = []

    def key_line(value_start: int) -> int:
        # Back from the value over ':' and blanks to the key's closing quote (a JSON string
        # cannot hold a raw newline, so that is the key's line).
        pos = value_start - 1
        while pos > 0 and text[pos] in " \t\r\n:":
            pos -= 1
        return line_at(pos)

    def parse_object(s_and_end, strict, scan_once, object_hook, object_pairs_hook, memo=None):
        starts: list[tuple[int, int]] = []

        def scan(string: str, idx: int):
            value, end = scan_once(string, idx)
            starts.append((idx, end))
            return value, end

        pairs, end = json_decoder.JSONObject(s_and_end, strict, scan, None, list, memo)
        mapping = DocumentMapping(line_at(s_and_end[1] - 1))
        for (key, value), (start, stop) in zip(pairs, starts):
            line = key_line(start)
            if key in mapping.lines:
                duplicates.append((mapping, key, mapping.lines[key], line))
                continue
            mapping[key] = value
            mapping.lines[key] = line
            if isinstance(value, (bool, int, float)):
                mapping.texts[key] = text[start:stop]
        return mapping, end

    def parse_array(s_and_end, scan_once):
        starts: list[tuple[int, int]] = []

        def scan(string: str, idx: int):
            value, end = scan_once(string, idx)
            starts.append((idx, end))
            return value, end

        values, end = json_decoder.JSONArray(s_and_end, scan)
        out = DocumentList(line_at(s_and_end[1] - 1))
        for value, (start, stop) in zip(values, starts):
            out.append(value)
            out.lines.append(line_at(start))
            out.texts.append(text[start:stop] if isinstance(value, (bool, int, float)) else None)
        return out, end

    # The pure-Python scanner and scanstring are in the json package at runtime but not in
    # typeshed (hence the ignores on their imports); the scanner takes this context object.
    context = SimpleNamespace(
        parse_object=parse_object, parse_array=parse_array,
        parse_string=_scanstring, strict=True, parse_float=float, parse_int=int,
        parse_constant=_JSON_CONSTANTS.__getitem__, object_hook=None, object_pairs_hook=None,
        memo={})
    scan_once = _py_make_scanner(context)
    start = len(text) - len(text.lstrip())
    try:
        if start == len(text):
            raise json.JSONDecodeError("Expecting value", text, start)
        try:
            value, end = scan_once(text, start)
        except StopIteration as exc:
            raise json.JSONDecodeError("Expecting value", text, exc.value) from None
        if text[end:].strip():
            raise json.JSONDecodeError("Extra data", text, end + len(text[end:]) -
                                       len(text[end:].lstrip()))
    except json.JSONDecodeError as exc:
        raise ValidationError(file, exc.lineno, None, f"valid JSON ({exc.msg})") from None
    if duplicates:
        _raise_first_duplicate(value, file, "", {id(m): d for m, *d in reversed(duplicates)})
    return value


def _raise_first_duplicate(value: Any, file: str, path: str, duplicates: dict) -> None:
    """Raise for the first duplicate key in document order, with its dotted path."""
    if isinstance(value, DocumentMapping):
        if id(value) in duplicates:
            key, first, second = duplicates[id(value)]
            raise _duplicate(file, path, key, first, second)
        for key, item in value.items():
            _raise_first_duplicate(item, file, _join(path, key), duplicates)
    elif isinstance(value, DocumentList):
        for index, item in enumerate(value):
            _raise_first_duplicate(item, file, _join(path, index), duplicates)


# -- where things are --------------------------------------------------------------------------
def line_of(document: Any, field: str | Iterable[str | int] | None) -> int | None:
    """Line of the dotted ``field`` in a loaded document, or of its deepest part written there.

    A field the document does not hold (a default the file left alone) gets the line of the
    nearest enclosing one, down to the document's first line.
    """
    steps = field.split(".") if isinstance(field, str) else list(field or ())
    node, line = document, getattr(document, "line", None)
    for step in steps:
        if isinstance(node, DocumentMapping) and str(step) in node.lines:
            line, node = node.lines[str(step)], node[str(step)]
        elif isinstance(node, DocumentList) and str(step).isdigit() \
                and int(step) < len(node):
            line, node = node.lines[int(step)], node[int(step)]
        else:
            break
    return line


def plain(value: Any) -> Any:
    """``value`` with the bookkeeping dropped: built-in dicts and lists all the way down."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


# -- checking ----------------------------------------------------------------------------------
_MISSING = object()
_D = TypeVar("_D")


class Fields:
    """The fields of one mapping (or the items of one list) of a document, read with checks.

    Every reader raises :class:`~llmrca.errors.ValidationError` with the file, the line of the
    field (the mapping's own line for a missing one) and the dotted field path. Works on plain
    dicts and lists too (``line`` then stays None unless given).

    Parameters
    ----------
    file : str or path
        The document, for errors.
    data : mapping or list
        What :func:`load_document` returned, or a part of it.
    path : str
        The dotted path of ``data`` in the document ('' for the root).
    line : int, optional
        Line to report when ``data`` has none of its own.
    """

    def __init__(self, file: str | Path, data: Any, path: str = "", line: int | None = None):
        self.file = str(file)
        self.data = data
        self.path = path
        self.line = getattr(data, "line", None) or line

    @classmethod
    def of_document(cls, file: str | Path, document: Any,
                    expected: str = "a mapping of fields") -> Fields:
        """The root mapping of a document; anything else (an empty file too) is an error."""
        if not isinstance(document, dict):
            got = type(document).__name__ if document is not None else "an empty document"
            raise ValidationError(str(file), getattr(document, "line", None) or 1, None,
                                  expected, got)
        return cls(file, document, "")

    # -- where ---------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[str | int]:
        """Keys in document order (indexes for a list)."""
        return iter(range(len(self.data))) if isinstance(self.data, list) else iter(self.data)

    def __contains__(self, key: str | int) -> bool:
        return self.raw(key) is not None

    def raw(self, key: str | int, default: Any = None) -> Any:
        """The value as loaded, unchecked (``default`` when missing)."""
        if isinstance(self.data, list):
            return self.data[key] if isinstance(key, int) and 0 <= key < len(self.data) \
                else default
        return self.data.get(key, default)

    @overload
    def field(self, key: str | int) -> str: ...
    @overload
    def field(self, key: None = None) -> str | None: ...

    def field(self, key: str | int | None = None) -> str | None:
        """The dotted path of ``key`` (of this mapping itself for None)."""
        if key is None:
            return self.path or None
        return _join(self.path, key)

    def line_of(self, key: str | int | None = None) -> int | None:
        """Line of ``key``, or of this mapping when the key is not written."""
        lines = getattr(self.data, "lines", None)
        if key is not None and lines is not None:
            if isinstance(lines, list):
                if isinstance(key, int) and 0 <= key < len(lines):
                    return lines[key] or self.line
            elif key in lines:
                return lines[key]
        return self.line

    def error(self, key: str | int | None, expected: str, got: Any = None) -> ValidationError:
        """A ValidationError for ``key`` (this mapping itself for None), at its line."""
        return ValidationError(self.file, self.line_of(key), self.field(key), expected, got)

    def only(self, allowed: Iterable[str], expected: str | None = None) -> None:
        """Fail on the first key (in document order) not in ``allowed``: a typo is not lost."""
        allowed = tuple(allowed)
        for key in self:
            if key not in allowed:
                raise self.error(key, expected or "a known field (" + ", ".join(allowed) + ")",
                                 key)

    # -- readers -------------------------------------------------------------------------------
    def _get(self, key: str | int, kind: str, required: bool) -> Any:
        value = self.raw(key)
        if value is None:
            if required:
                raise self.error(key, f"{kind} (required)")
            return _MISSING
        return value

    def _text(self, key: str | int) -> str | None:
        texts = getattr(self.data, "texts", None)
        if texts is None:
            return None
        if isinstance(texts, list):
            return texts[key] if isinstance(key, int) and 0 <= key < len(texts) else None
        return texts.get(key)

    # Each reader's overloads: with ``required=True`` or a default other than None it never
    # gives None; otherwise it may (the field is missing).
    @overload
    def string(self, key: str | int, *, required: Literal[True], default: str | None = ...,
               choices: Iterable[str] | None = ..., pattern: re.Pattern[str] | None = ...,
               expected: str | None = ..., nonempty: bool = ...) -> str: ...
    @overload
    def string(self, key: str | int, *, required: bool = ..., default: str,
               choices: Iterable[str] | None = ..., pattern: re.Pattern[str] | None = ...,
               expected: str | None = ..., nonempty: bool = ...) -> str: ...
    @overload
    def string(self, key: str | int, *, required: bool = ..., default: None = ...,
               choices: Iterable[str] | None = ..., pattern: re.Pattern[str] | None = ...,
               expected: str | None = ..., nonempty: bool = ...) -> str | None: ...

    def string(self, key: str | int, *, required: bool = False, default: str | None = None,
               choices: Iterable[str] | None = None, pattern: re.Pattern[str] | None = None,
               expected: str | None = None, nonempty: bool = False) -> str | None:
        """A string as written: a scalar such as ``0010`` or ``3`` gives its source text.

        ``choices`` or ``pattern`` restrict it (``expected`` then describes what is valid);
        ``nonempty`` refuses a blank one.
        """
        kind = expected or "a string"
        value = self._get(key, kind, required)
        if value is _MISSING:
            return default
        text: str | None
        if isinstance(value, str):
            text = value
        else:
            text = self._text(key) if isinstance(value, (bool, int, float)) else None
            if text is None:
                raise self.error(key, kind, value)
        if nonempty and not text.strip():
            raise self.error(key, expected or "a non-empty string", text)
        if choices is not None:
            choices = tuple(choices)
            if text not in choices:
                raise self.error(key, expected or "one of " + ", ".join(choices), text)
        if pattern is not None and not pattern.fullmatch(text):
            raise self.error(key, expected or f"a string matching {pattern.pattern}", text)
        return text

    @overload
    def integer(self, key: str | int, *, required: Literal[True], default: int | None = ...,
                minimum: int | None = ...) -> int: ...
    @overload
    def integer(self, key: str | int, *, required: bool = ..., default: int,
                minimum: int | None = ...) -> int: ...
    @overload
    def integer(self, key: str | int, *, required: bool = ..., default: None = ...,
                minimum: int | None = ...) -> int | None: ...

    def integer(self, key: str | int, *, required: bool = False, default: int | None = None,
                minimum: int | None = None) -> int | None:
        """A decimal integer (``0010`` and ``0x1F`` are strings, so errors here)."""
        kind = "an integer" if minimum is None else f"an integer >= {minimum}"
        value = self._get(key, kind, required)
        if value is _MISSING:
            return default
        if isinstance(value, bool) or not isinstance(value, int) \
                or (minimum is not None and value < minimum):
            raise self.error(key, kind, value)
        return value

    @overload
    def number(self, key: str | int, *, required: Literal[True],
               default: float | None = ...) -> float: ...
    @overload
    def number(self, key: str | int, *, required: bool = ..., default: float) -> float: ...
    @overload
    def number(self, key: str | int, *, required: bool = ...,
               default: None = ...) -> float | None: ...

    def number(self, key: str | int, *, required: bool = False,
               default: float | None = None) -> float | None:
        """A number (an integer is taken as a float)."""
        value = self._get(key, "a number", required)
        if value is _MISSING:
            return default
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.error(key, "a number", value)
        return float(value)

    @overload
    def boolean(self, key: str | int, *, required: Literal[True],
                default: bool | None = ...) -> bool: ...
    @overload
    def boolean(self, key: str | int, *, required: bool = ..., default: bool) -> bool: ...
    @overload
    def boolean(self, key: str | int, *, required: bool = ...,
                default: None = ...) -> bool | None: ...

    def boolean(self, key: str | int, *, required: bool = False,
                default: bool | None = None) -> bool | None:
        """``true`` or ``false`` (``yes``/``no``/``on``/``off`` are strings, so errors here)."""
        value = self._get(key, "true or false", required)
        if value is _MISSING:
            return default
        if not isinstance(value, bool):
            raise self.error(key, "true or false", value)
        return value

    @overload
    def timestamp(self, key: str | int, *, required: Literal[True]) -> datetime: ...
    @overload
    def timestamp(self, key: str | int, *, required: bool = ...) -> datetime | None: ...

    def timestamp(self, key: str | int, *, required: bool = False) -> datetime | None:
        """An ISO-8601 timestamp as naive UTC (a naive one is taken to be UTC already)."""
        kind = "an ISO-8601 timestamp"
        value = self._get(key, kind, required)
        if value is _MISSING:
            return None
        if not isinstance(value, datetime):
            text = self.string(key, required=True)  # present: checked above
            try:
                value = datetime.fromisoformat(text.strip().replace("Z", "+00:00")
                                               .replace("z", "+00:00"))
            except ValueError:
                raise self.error(key, kind + " such as 2026-10-12T08:00:00Z", text) from None
        if value.tzinfo is not None:
            value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None)

    @overload
    def mapping(self, key: str | int, *, required: Literal[True],
                expected: str = ...) -> Fields: ...
    @overload
    def mapping(self, key: str | int, *, required: bool = ...,
                expected: str = ...) -> Fields | None: ...

    def mapping(self, key: str | int, *, required: bool = False,
                expected: str = "a mapping") -> Fields | None:
        """A nested mapping, as its own :class:`Fields` (None when missing)."""
        value = self._get(key, expected, required)
        if value is _MISSING:
            return None
        if not isinstance(value, dict):
            raise self.error(key, expected, value)
        return Fields(self.file, value, self.field(key), self.line_of(key))

    @overload
    def sequence(self, key: str | int, *, required: Literal[True], nonempty: bool = ...,
                 expected: str = ...) -> Fields: ...
    @overload
    def sequence(self, key: str | int, *, required: bool = ..., nonempty: bool = ...,
                 expected: str = ...) -> Fields | None: ...

    def sequence(self, key: str | int, *, required: bool = False, nonempty: bool = False,
                 expected: str = "a list") -> Fields | None:
        """A nested list, as a :class:`Fields` whose keys are the indexes (None when missing)."""
        value = self._get(key, expected, required)
        if value is _MISSING:
            return None
        if isinstance(value, (str, dict)) or not isinstance(value, (list, tuple)) \
                or (nonempty and not value):
            raise self.error(key, expected, value)
        return Fields(self.file, value, self.field(key), self.line_of(key))

    def mappings(self, key: str | int, *, required: bool = False, nonempty: bool = False,
                 expected: str = "a list of mappings",
                 item: str = "a mapping") -> list[Fields]:
        """A list of mappings, each as its own :class:`Fields` (``[]`` when missing)."""
        items = self.sequence(key, required=required, nonempty=nonempty, expected=expected)
        return [] if items is None else [items.mapping(i, required=True, expected=item)
                                         for i in items]

    @overload
    def strings(self, key: str | int, *, required: Literal[True], default: Any = ...,
                nonempty: bool = ..., choices: Iterable[str] | None = ...,
                blank_items: bool = ..., expected: str = ...) -> list[str]: ...
    @overload
    def strings(self, key: str | int, *, required: bool = ..., default: None = ...,
                nonempty: bool = ..., choices: Iterable[str] | None = ...,
                blank_items: bool = ..., expected: str = ...) -> list[str] | None: ...
    @overload
    def strings(self, key: str | int, *, required: bool = ..., default: _D,
                nonempty: bool = ..., choices: Iterable[str] | None = ...,
                blank_items: bool = ..., expected: str = ...) -> list[str] | _D: ...

    def strings(self, key: str | int, *, required: bool = False, default: _D | None = None,
                nonempty: bool = False, choices: Iterable[str] | None = None,
                blank_items: bool = True,
                expected: str = "a list of strings") -> list[str] | _D | None:
        """A list of strings as written; ``blank_items=False`` refuses empty ones."""
        items = self.sequence(key, required=required, nonempty=nonempty, expected=expected)
        if items is None:
            return default
        return [items.string(i, required=True, choices=choices, nonempty=not blank_items)
                for i in items]

    def plain(self, key: str | int, *, default: Any = None) -> Any:
        """A free-form value (``metadata``) as built-in types."""
        value = self.raw(key)
        return default if value is None else plain(value)
