"""The registry of interaction input formats, and the reader that runs them over a file.

An adapter is a subclass of :class:`InteractionFormat` with two hooks: ``sniff`` (does this parsed
JSON record look like my format?) and ``parse`` (turn one record into zero or more
:class:`InteractionRecord`, and :class:`Skipped` for what it read and left out, raising
:class:`~llmrca.errors.ValidationError` through ``where``). A format whose records refer to each
other across lines (spans whose conversation id sits on an ancestor in another export line)
overrides ``parse_file`` instead, which sees the whole file. The reader does the rest: JSONL or
JSON documents, line numbers, malformed JSON, auto-detection.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, ClassVar

from llmrca.errors import ValidationError
from llmrca.ingest.records import (
    INTERACTION_ROLES,
    InteractionRecord,
    Skipped,
    Where,
    split_system,
    unencodable_field,
)
from llmrca.registry import Registry
from llmrca.textcheck import UNENCODABLE_EXPECTED, first_lone_surrogate, may_hold_surrogate


class InteractionFormat(ABC):
    """An input format for interactions (offending conversations)."""

    name: ClassVar[str]
    description: ClassVar[str]

    @abstractmethod
    def sniff(self, record: Any) -> bool:
        """True when a parsed record is unambiguously of this format."""

    @abstractmethod
    def parse(self, record: Any, where: Where) -> list[InteractionRecord | Skipped]:
        """The interactions in one record, and a :class:`Skipped` for each part left out."""

    def parse_file(self, path: Path, records: Iterable[tuple[int, Any]]
                   ) -> Iterator[InteractionRecord | Skipped | ValidationError]:
        """Everything in one file: by default :meth:`parse` of each record in turn.

        ``records`` yields ``(line, parsed JSON)``, or ``(line, ValidationError)`` for a line that
        is not JSON; errors are yielded, not raised, so ``--skip-invalid`` can go on.
        """
        for line, record in records:
            if isinstance(record, ValidationError):
                yield record
                continue
            try:
                yield from self.parse(record, Where(str(path), line))
            except ValidationError as exc:
                yield exc


FORMATS: Registry[InteractionFormat] = Registry("input format")


def register_format(cls: type[InteractionFormat]) -> type[InteractionFormat]:
    """Class decorator: register an adapter under its ``name``."""
    FORMATS.register(cls.name, cls())
    return cls


def iter_json_records(path: Path) -> Iterator[tuple[int, Any]]:
    """``(line, parsed)`` for a JSONL file, or ``(1, document)`` for a ``.json`` file.

    Blank lines are skipped. A line that is not JSON comes as ``(line, ValidationError)`` and
    reading goes on, so that ``--skip-invalid`` keeps the lines after it. So does a record with
    text that cannot be stored (a lone UTF-16 surrogate such as ``"\\ud83d"``, or bytes that are
    not UTF-8), its error naming the dotted field: no adapter ever sees it.
    """
    path = Path(path)
    if path.suffix == ".json":
        text = path.read_text(encoding="utf-8", errors="surrogateescape")
        try:
            document = _checked(path, 1, text, json.loads(text))
        except json.JSONDecodeError as exc:
            document = ValidationError(str(path), exc.lineno, None,
                                       f"a JSON document ({exc.msg} at column {exc.colno})")
        except RecursionError:
            document = _too_deep(path, 1)
        yield 1, document
        return
    with path.open(encoding="utf-8", errors="surrogateescape") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield number, _checked(path, number, line, json.loads(line))
            except json.JSONDecodeError as exc:
                yield number, ValidationError(
                    str(path), number, None,
                    f"one JSON object per line ({exc.msg} at column {exc.colno})", line.strip())
            except RecursionError:
                yield number, _too_deep(path, number)


#: How deep a record's JSON may nest. Real chat records nest a few levels (messages, parts,
#: tool calls, metadata); a deeper one is refused rather than risk the recursion limits of the
#: code that hashes, checks and stores it.
MAX_JSON_DEPTH = 64


def _depth_error(path: Path, line: int, record: Any) -> ValidationError | None:
    """The error for a record nested deeper than :data:`MAX_JSON_DEPTH`, naming where."""
    stack: list[tuple[Any, str, int]] = [(record, "", 0)]
    while stack:
        value, where, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            return ValidationError(str(path), line, where.split(".")[0] or None,
                                   f"JSON nested at most {MAX_JSON_DEPTH} levels deep",
                                   where[:60] + "...")
        if isinstance(value, dict):
            stack.extend((v, f"{where}.{k}" if where else str(k), depth + 1)
                         for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((v, f"{where}.{i}" if where else str(i), depth + 1)
                         for i, v in enumerate(value))
    return None


def _too_deep(path: Path, line: int) -> ValidationError:
    return ValidationError(str(path), line, None,
                           f"JSON nested at most {MAX_JSON_DEPTH} levels deep")


def _checked(path: Path, line: int, text: str, record: Any) -> Any:
    """``record``, or the error naming its first value that cannot be stored (or that nests
    too deep)."""
    too_deep = _depth_error(path, line, record)
    if too_deep is not None:
        return too_deep
    if not may_hold_surrogate(text):
        return record
    found = first_lone_surrogate(record)
    if found is None:
        return record
    field_name, value = found
    return ValidationError(str(path), line, field_name or None, UNENCODABLE_EXPECTED, value)


def detect_format(path: Path) -> str:
    """The name of the one format whose ``sniff`` accepts the file's first JSON record.

    With no JSON record to sniff, the first bad line's error is the answer (a line that is not
    JSON, or holds text that cannot be stored), else "at least one JSON record".
    """
    first_error: ValidationError | None = None
    for line, record in iter_json_records(path):
        if isinstance(record, ValidationError):
            first_error = first_error or record
            continue
        matches = [name for name in FORMATS.available() if FORMATS.get(name).sniff(record)]
        if len(matches) == 1:
            return matches[0]
        expected = ("a record of a known format (" + ", ".join(FORMATS.available()) + ")"
                    if not matches else "an unambiguous format; pass --format (matches: "
                    + ", ".join(matches) + ")")
        raise ValidationError(str(path), line, None, expected)
    raise first_error or ValidationError(str(path), None, None, "at least one JSON record")


def read_interactions(path: Path, format_name: str | None = None
                      ) -> Iterator[InteractionRecord | Skipped | ValidationError]:
    """Parse a file of interactions; yields records, what was skipped, and the error of each bad
    record, in order.

    The caller decides whether an error aborts the run or becomes a reject. When no format can
    be detected the file's one error is yielded and nothing else.
    """
    path = Path(path)
    try:
        adapter = FORMATS.get(format_name or detect_format(path))
    except ValidationError as exc:
        yield exc
        return
    for item in adapter.parse_file(path, iter_json_records(path)):
        if isinstance(item, InteractionRecord):
            found = unencodable_field(item)
            if found is not None:
                item = ValidationError(item.source_file, item.source_line, found[0],
                                       UNENCODABLE_EXPECTED, found[1])
        yield item


@register_format
class NativeFormat(InteractionFormat):
    """llmrca's own JSONL: one interaction per line (see docs/formats.md)."""

    name = "llmrca"
    description = "llmrca interactions JSONL (messages + output + model_version per line)"

    def sniff(self, record: Any) -> bool:
        return (isinstance(record, dict) and "messages" in record
                and ("output" in record or "model_version" in record)
                and "choices" not in record and "request" not in record)

    def parse(self, record: Any, where: Where) -> list[InteractionRecord | Skipped]:
        if not isinstance(record, dict):
            raise where.error(None, "a JSON object", record)
        messages = where.messages(record.get("messages"))
        system_prompt = where.get(record, "system_prompt", str)
        leading_system, messages = split_system(messages)
        if system_prompt is None:
            system_prompt = leading_system
        if not messages:
            raise where.error("messages", "at least one user message")
        guardrail = where.get(record, "guardrail", dict)
        return [InteractionRecord(
            source_format=self.name,
            source_file=where.file,
            source_line=where.line,
            messages=messages,
            output=where.get(record, "output", str),
            system_prompt=system_prompt,
            model_version=where.get(record, "model_version", str, required=True),
            timestamp=where.timestamp(record.get("timestamp"), "timestamp"),
            session_id=_as_id(where, record, "session_id"),
            user_id=_as_id(where, record, "user_id"),
            source_id=_as_id(where, record, "interaction_id"),
            guardrail=guardrail,
            metadata=where.get(record, "metadata", dict, default={}),
            response_id=_as_id(where, record, "response_id"),
            trace_id=_as_id(where, record, "trace_id"),
            span_id=_as_id(where, record, "span_id"),
            parent_span_id=_as_id(where, record, "parent_span_id"),
            role=_role(where, record),
            flags=guardrail_flags(guardrail),
            tools=where.get(record, "tools", list),
        )]


def _as_id(where: Where, record: dict, key: str) -> str | None:
    value = where.get(record, key, (str, int))
    return None if value is None else str(value)


def _role(where: Where, record: dict) -> str | None:
    role = where.get(record, "role", str)
    if role is not None and role not in INTERACTION_ROLES:
        raise where.error("role", "one of " + ", ".join(INTERACTION_ROLES), role)
    return role


def guardrail_flags(guardrail: dict[str, Any] | None) -> dict[str, str]:
    """``{"guardrail": decision}`` when a guardrail blocked, flagged or redacted the call."""
    decision = (guardrail or {}).get("decision")
    if isinstance(decision, str) and decision.lower() in ("block", "flag", "redact"):
        return {"guardrail": decision.lower()}
    return {}
