"""The validated records every input adapter produces, and the helper adapters use to check fields."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from llmrca.errors import ValidationError
from llmrca.textcheck import first_lone_surrogate

#: Roles accepted in a chat message (OpenAI chat shape; "developer" is OpenAI's newer "system").
ROLES = ("system", "developer", "user", "assistant", "tool")


#: Roles an interaction can have in its incident: ``offending`` (the calls that are the
#: incident: replay, attribution and hypotheses use them by default) or ``context`` (the traffic
#: around them: the benign regression set and the base of triage's scope).
INTERACTION_ROLES = ("offending", "context")


@dataclass(frozen=True)
class InteractionRecord:
    """One LLM call (an interaction), whatever format it came in.

    ``messages`` is in OpenAI chat shape: a list of ``{"role", "content"}`` dicts, assistant
    messages may carry ``tool_calls`` and tool messages ``tool_call_id``. The system prompt is kept
    apart from ``messages`` (``system_prompt``) so replay can drop or swap it. ``output`` is the
    model's answer. ``session_id`` and ``user_id`` are in the clear here; the store hashes them
    with its salt and never keeps them as they are.

    One call is one interaction however many sources report it (spans, log events, the
    provider's request log). :meth:`keys` says how a call is recognised across sources: the
    provider's ``response_id`` when there is one, else ``(trace_id, span_id)``.

    ``role`` is set only when the source says it (llmrca's own format); otherwise the incident's
    selection or the ``flags`` decide (see :mod:`llmrca.ingest.roles`). ``flags`` are signals that
    the call was the problem (a guardrail block, a provider content filter, a red-team detector
    hit), as ``{"name": reason}``. ``tools`` are the tool definitions offered to the model;
    ``context`` holds what happened around the call and is not part of the conversation: tool
    executions, guardrail checks (a list of objects with a ``kind``).
    """

    source_format: str
    source_file: str
    source_line: int | None
    messages: list[dict[str, Any]]
    output: str | None = None
    system_prompt: str | None = None
    model_version: str | None = None
    timestamp: datetime | None = None
    session_id: str | None = None
    user_id: str | None = None
    source_id: str | None = None
    guardrail: dict[str, Any] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    response_id: str | None = None
    trace_id: str | None = None
    span_id: str | None = None
    parent_span_id: str | None = None
    role: str | None = None
    flags: dict[str, str] = field(default_factory=dict)
    tools: list[dict[str, Any]] | None = None
    context: list[dict[str, Any]] = field(default_factory=list)

    def keys(self) -> list[str]:
        """The keys under which another source may report the same call, strongest first."""
        keys = []
        if self.response_id:
            keys.append(f"response:{self.response_id}")
        if self.trace_id and self.span_id:
            keys.append(f"span:{self.trace_id}:{self.span_id}")
        return keys

    def identity(self) -> str:
        """What makes two records the same interaction when no cross-source key applies: the
        source's own id if it has one, else the content."""
        if self.source_id:
            return f"{self.source_format}:{self.source_id}"
        return json.dumps({"messages": self.messages, "system": self.system_prompt,
                           "output": self.output, "model": self.model_version,
                           "ts": self.timestamp.isoformat() if self.timestamp else None,
                           "session": self.session_id, "user": self.user_id},
                          sort_keys=True, ensure_ascii=False)


@dataclass(frozen=True)
class Skipped:
    """Records an adapter read and deliberately did not turn into interactions, with the reason.

    Adapters yield these beside their records so the ingest summary can say what happened to
    every line ("non-chat spans", "status-1 garak attempts", "content not captured").
    ``hint`` is shown once under the summary when set (e.g. how to turn content capture on).
    """

    reason: str
    count: int = 1
    hint: str | None = None


#: Times accepted on the way in (UTC, naive): the range log rows are checked against too.
TIMESTAMP_RANGE = (datetime(1900, 1, 1), datetime(2201, 1, 1))


class Where:
    """A place in an input file, for checks that fail with file, line and field.

    Parameters
    ----------
    file : str
        The input file.
    line : int or None
        1-based line (or row) of the record.
    """

    def __init__(self, file: str, line: int | None):
        self.file = file
        self.line = line

    def error(self, field_name: str | None, expected: str, got: object = None) -> ValidationError:
        return ValidationError(self.file, self.line, field_name, expected, got)

    def get(self, obj: dict, key: str, kind: type | tuple[type, ...], *, path: str | None = None,
            required: bool = False, default: Any = None) -> Any:
        """``obj[key]`` checked to be of ``kind``; missing or null gives ``default`` unless required."""
        name = path or key
        value = obj.get(key) if isinstance(obj, dict) else None
        if value is None:
            if required:
                raise self.error(name, f"{_kind_name(kind)} (required)", None)
            return default
        if isinstance(value, bool) and bool not in _as_tuple(kind):
            raise self.error(name, _kind_name(kind), value)
        if not isinstance(value, kind):
            raise self.error(name, _kind_name(kind), value)
        return value

    def timestamp(self, value: Any, field_name: str, *, required: bool = False) -> datetime | None:
        """An ISO-8601 string, or epoch seconds / nanoseconds, as a naive UTC datetime."""
        if value is None or value == "":
            if required:
                raise self.error(field_name, "an ISO-8601 timestamp (required)")
            return None
        try:
            if isinstance(value, bool):
                raise TypeError
            if isinstance(value, (int, float)) or (isinstance(value, str) and value.isdigit()):
                number = float(value)
                if number > 1e17:       # OTLP uses nanoseconds since the epoch
                    number /= 1e9
                elif number > 1e14:     # microseconds
                    number /= 1e6
                elif number > 1e11:     # milliseconds
                    number /= 1e3
                parsed = datetime.fromtimestamp(number, tz=timezone.utc)
            else:
                parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except (TypeError, ValueError, OverflowError, OSError):
            raise self.error(field_name, "an ISO-8601 timestamp or epoch number", value) from None
        if parsed.tzinfo is not None:
            try:
                parsed = parsed.astimezone(timezone.utc).replace(tzinfo=None)
            except OverflowError:   # year 1 with a positive offset, year 9999 with a negative
                raise self.error(field_name, "a timestamp that is in range once converted to "
                                             "UTC", value) from None
        if not TIMESTAMP_RANGE[0] <= parsed < TIMESTAMP_RANGE[1]:
            # The same range as log rows: a year-1 or year-9999 time is an export's placeholder,
            # and it would stretch the incident's time window silently.
            raise self.error(field_name, "an ISO-8601 timestamp between 1900-01-01 and "
                                         "2200-12-31 (UTC)", value)
        return parsed

    def messages(self, value: Any, field_name: str = "messages", *,
                 required: bool = True) -> list[dict[str, Any]]:
        """A list of chat messages in OpenAI shape, each with a known role."""
        if value is None:
            if required:
                raise self.error(field_name, "a list of chat messages (required)")
            return []
        if not isinstance(value, list):
            raise self.error(field_name, "a list of chat messages", value)
        out = []
        for i, msg in enumerate(value):
            name = f"{field_name}.{i}"
            if not isinstance(msg, dict):
                raise self.error(name, "a message object with 'role' and 'content'", msg)
            role = msg.get("role")
            if role not in ROLES:
                raise self.error(f"{name}.role", "one of " + ", ".join(ROLES), role)
            content = msg.get("content")
            if isinstance(content, list):   # content parts: keep the text ones
                content = join_text_parts(content, self, f"{name}.content")
            if content is not None and not isinstance(content, str):
                raise self.error(f"{name}.content", "a string, a list of content parts or null",
                                 content)
            if content is None and not msg.get("tool_calls"):
                raise self.error(f"{name}.content", "a string (or tool_calls on an assistant turn)")
            clean: dict[str, Any] = {"role": role, "content": content}
            for extra in ("name", "tool_calls", "tool_call_id"):
                if msg.get(extra) is not None:
                    clean[extra] = msg[extra]
            out.append(clean)
        return out


#: Part types whose text a multi-part message keeps (OpenAI's chat and Responses APIs, OTel).
TEXT_PART_TYPES = ("text", "input_text", "output_text")


def join_text_parts(parts: list[Any], where: Where, path: str) -> str:
    """The text of a multi-part message content, by the one rule every adapter follows.

    Text parts (a plain string, or an object whose ``type`` is ``text``, ``input_text`` or
    ``output_text``, or that has no ``type``, with its text in ``text`` or, OTel's spelling,
    ``content``) are joined **with a newline** between them, in order. Other parts (images,
    audio, files, refusals, reasoning) hold no chat text and are left out. A text part whose
    text is not a string, or a part that is not an object, is an error at ``<path>.<j>...``.
    """
    texts = []
    for j, part in enumerate(parts):
        if isinstance(part, str):
            texts.append(part)
            continue
        if not isinstance(part, dict):
            raise where.error(f"{path}.{j}", "a content part object", part)
        kind = part.get("type")
        if kind is not None and kind not in TEXT_PART_TYPES:
            continue
        key = "text" if "text" in part else "content"
        text = part.get(key)
        if isinstance(text, str):
            texts.append(text)
        elif text is not None or kind is not None:
            raise where.error(f"{path}.{j}.{key}", "a string", text)
    return "\n".join(texts)


def unencodable_field(record: InteractionRecord) -> tuple[str, str] | None:
    """``(field, text)`` of the first value of a parsed record that cannot be stored (a lone
    surrogate), named by the record's field (``messages.0.content``); None when all can.

    The reader checks the input before any adapter runs (:func:`llmrca.ingest.formats.
    iter_json_records`); this catches what an adapter decoded from inside a value.
    """
    values = {name: getattr(record, name) for name in _TEXT_FIELDS}
    try:
        json.dumps(values, ensure_ascii=False, default=str).encode("utf-8")
        return None
    except UnicodeEncodeError:
        return first_lone_surrogate(values)


_TEXT_FIELDS = ("messages", "output", "system_prompt", "model_version", "session_id", "user_id",
                "source_id", "guardrail", "metadata", "response_id", "trace_id", "span_id",
                "parent_span_id", "role", "flags", "tools", "context")


def split_system(messages: list[dict[str, Any]]) -> tuple[str | None, list[dict[str, Any]]]:
    """Take leading system/developer messages out as the system prompt."""
    system_parts = []
    rest = list(messages)
    while rest and rest[0]["role"] in ("system", "developer"):
        system_parts.append(rest.pop(0)["content"] or "")
    return ("\n".join(system_parts) if system_parts else None), rest


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _kind_name(kind: type | tuple[type, ...]) -> str:
    names = {str: "a string", int: "an integer", float: "a number", dict: "an object",
             list: "a list", bool: "true or false"}
    return " or ".join(names.get(k, k.__name__) for k in _as_tuple(kind))
