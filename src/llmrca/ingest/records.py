"""The validated records every input adapter produces, and the helper adapters use to check fields."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from llmrca.errors import ValidationError

#: Roles accepted in a chat message (OpenAI chat shape; "developer" is OpenAI's newer "system").
ROLES = ("system", "developer", "user", "assistant", "tool")


@dataclass(frozen=True)
class InteractionRecord:
    """One offending conversation, whatever format it came in.

    ``messages`` is in OpenAI chat shape: a list of ``{"role", "content"}`` dicts, assistant
    messages may carry ``tool_calls`` and tool messages ``tool_call_id``. The system prompt is kept
    apart from ``messages`` (``system_prompt``) so replay can drop or swap it. ``output`` is the
    model's answer that the incident is about. ``session_id`` and ``user_id`` are in the clear
    here; the store hashes them with its salt and never keeps them as they are.
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

    def identity(self) -> str:
        """What makes two records the same interaction: the source's own id if it has one."""
        if self.source_id:
            return f"{self.source_format}:{self.source_id}"
        return json.dumps({"messages": self.messages, "system": self.system_prompt,
                           "output": self.output, "model": self.model_version,
                           "ts": self.timestamp.isoformat() if self.timestamp else None,
                           "session": self.session_id, "user": self.user_id},
                          sort_keys=True, ensure_ascii=False)


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
                return datetime.fromtimestamp(number, tz=timezone.utc).replace(tzinfo=None)
            parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except (TypeError, ValueError, OverflowError, OSError):
            raise self.error(field_name, "an ISO-8601 timestamp or epoch number", value) from None
        if parsed.tzinfo is not None:
            parsed = parsed.astimezone(timezone.utc).replace(tzinfo=None)
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
                texts = []
                for j, part in enumerate(content):
                    if isinstance(part, str):
                        texts.append(part)
                    elif isinstance(part, dict) and isinstance(part.get("text"), str):
                        texts.append(part["text"])
                    elif not isinstance(part, dict):
                        raise self.error(f"{name}.content.{j}", "a content part object", part)
                content = "".join(texts)
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
