"""OpenAI chat-completions logs (format ``openai-chat``).

One JSON object per line, in either of the two shapes loggers write:

* wrapped: ``{"request": {...}, "response": {...}, "metadata": {...}}`` where ``request`` is the
  body sent to ``/v1/chat/completions`` and ``response`` the chat completion object returned;
* flat: a chat completion object with the request's ``messages`` beside its ``choices``.

Choice 0 is the output the incident is about; see docs/adapters.md for the full field mapping.
"""

from __future__ import annotations

import json
from typing import Any

from llmrca.ingest.formats import InteractionFormat, register_format
from llmrca.ingest.records import InteractionRecord, Skipped, Where, split_system

#: Keys of the log's own ``metadata`` that become record fields rather than metadata.
_LOG_FIELDS = ("user_id", "session_id", "timestamp")
#: Request keys that are not generation parameters (or that identify a person, or are the tool
#: definitions, which are the record's ``tools``).
_NOT_PARAMS = ("messages", "model", "user", "safety_identifier", "tools")


def render_output(content: str | None, tool_calls: list[dict[str, Any]] | None) -> str | None:
    """The answer as one text: the content, then (on a new line) the tool calls as a JSON list.

    The calls are rendered in :func:`canonical_tool_calls` form, so that every source of one call
    (the provider's log, spans, log events) renders the same text.
    """
    if not tool_calls:
        return content
    rendered = json.dumps(canonical_tool_calls(tool_calls), ensure_ascii=False)
    return f"{content}\n{rendered}" if content else rendered


def canonical_arguments(value: Any) -> str:
    """Tool-call arguments as JSON text in one spelling: OpenAI sends compact text, telemetry
    often a decoded object; both become ``json.dumps`` of the decoded value. Text that is not
    JSON is kept as it is."""
    if value is None:
        return "{}"
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return value
    return json.dumps(value, ensure_ascii=False)


def canonical_tool_calls(tool_calls: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    """OpenAI tool calls with keys in one order (``id``, ``type``, ``function``: ``name``,
    ``arguments``, then any others sorted) and :func:`canonical_arguments`."""
    if not tool_calls:
        return tool_calls
    out = []
    for call in tool_calls:
        function = call.get("function") or {}
        canonical_function = {"name": function.get("name"),
                              "arguments": canonical_arguments(function.get("arguments"))}
        canonical_function.update({k: function[k] for k in sorted(function)
                                   if k not in canonical_function})
        entry: dict[str, Any] = {}
        if call.get("id") is not None:
            entry["id"] = str(call["id"])
        entry["type"] = call.get("type") or "function"
        entry["function"] = canonical_function
        entry.update({k: call[k] for k in sorted(call) if k not in ("id", "type", "function")})
        out.append(entry)
    return out


def canonical_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages whose assistant ``tool_calls`` are in :func:`canonical_tool_calls` form."""
    return [{**m, "tool_calls": canonical_tool_calls(m["tool_calls"])} if m.get("tool_calls")
            else m for m in messages]


def check_tool_calls(where: Where, value: Any, field_name: str) -> list[dict[str, Any]] | None:
    """OpenAI ``tool_calls``: a list of ``{"id", "type", "function": {"name", "arguments"}}``."""
    if value is None:
        return None
    if not isinstance(value, list):
        raise where.error(field_name, "a list of tool calls", value)
    for i, call in enumerate(value):
        name = f"{field_name}.{i}"
        if not isinstance(call, dict):
            raise where.error(name, "a tool call object", call)
        function = where.get(call, "function", dict, path=f"{name}.function", required=True)
        where.get(function, "name", str, path=f"{name}.function.name", required=True)
    return value


@register_format
class OpenAIChatFormat(InteractionFormat):
    """OpenAI chat-completions request/response logs, one call per line."""

    name = "openai-chat"
    description = "OpenAI chat-completions logs (request + response per line, or a flat completion)"

    def sniff(self, record: Any) -> bool:
        if not isinstance(record, dict):
            return False
        request = record.get("request")
        wrapped = isinstance(request, dict) and "messages" in request and "response" in record
        flat = "messages" in record and "choices" in record
        return wrapped or flat

    def parse(self, record: Any, where: Where) -> list[InteractionRecord | Skipped]:
        if not isinstance(record, dict):
            raise where.error(None, "a JSON object", record)
        if "request" in record:
            request = where.get(record, "request", dict, required=True)
            response = where.get(record, "response", dict)
            error = record.get("error")
            if response is None and error is None:
                raise where.error("response", "an object (required unless the line logs an 'error')")
            req, resp = "request.", "response."
        else:
            request = response = record
            error = None
            req = resp = ""
        log = where.get(record, "metadata", dict, default={})

        system_prompt, messages = split_system(canonical_messages(
            where.messages(request.get("messages"), f"{req}messages")))
        if not messages:
            raise where.error(f"{req}messages", "at least one message besides system/developer")

        metadata: dict[str, Any] = {}
        output = None
        source_id = None
        model = None
        created = None
        if response is not None:
            choices = where.get(response, "choices", list, path=f"{resp}choices", required=True)
            if not choices:
                raise where.error(f"{resp}choices", "at least one choice", choices)
            answers = [_choice(where, choice, f"{resp}choices.{i}")
                       for i, choice in enumerate(choices)]
            output, finish_reason, tool_calls, refusal = answers[0]
            metadata["finish_reason"] = finish_reason
            if tool_calls:
                metadata["output_tool_calls"] = canonical_tool_calls(tool_calls)
            if refusal is not None:
                metadata["refusal"] = refusal
            if len(answers) > 1:
                metadata["other_outputs"] = [answer[0] for answer in answers[1:]]
            for key, kind in (("system_fingerprint", str), ("usage", dict)):
                value = where.get(response, key, kind, path=f"{resp}{key}")
                if value is not None:
                    metadata[key] = value
            source_id = where.get(response, "id", str, path=f"{resp}id")
            model = where.get(response, "model", str, path=f"{resp}model")
            created = where.timestamp(response.get("created"), f"{resp}created")
        else:
            metadata["error"] = error
        if model is None:
            model = where.get(request, "model", str, path=f"{req}model")
        if model is None:
            raise where.error(f"{resp}model" if response is not None else f"{req}model",
                              "a string naming the model (required)")

        if req:     # the flat shape cannot tell request parameters from response fields
            params = {k: v for k, v in request.items() if k not in _NOT_PARAMS}
            if params:
                metadata["request_params"] = params
        extra = {k: v for k, v in log.items() if k not in _LOG_FIELDS}
        if extra:
            metadata["log"] = extra

        user_id = (_as_id(where, log, "user_id", "metadata.user_id")
                   or _as_id(where, request, "user", f"{req}user")
                   or _as_id(where, request, "safety_identifier", f"{req}safety_identifier"))
        timestamp = created or where.timestamp(log.get("timestamp"), "metadata.timestamp")
        tools = where.get(request, "tools", list, path=f"{req}tools") if req else None
        return [InteractionRecord(
            source_format=self.name,
            source_file=where.file,
            source_line=where.line,
            messages=messages,
            output=output,
            system_prompt=system_prompt,
            model_version=model,
            timestamp=timestamp,
            session_id=_as_id(where, log, "session_id", "metadata.session_id"),
            user_id=user_id,
            source_id=source_id,
            metadata=metadata,
            response_id=source_id,
            tools=tools or None,
        )]


def _choice(where: Where, choice: Any, name: str
            ) -> tuple[str | None, str | None, list[dict[str, Any]] | None, str | None]:
    """``(output text, finish_reason, tool_calls, refusal)`` of one choice."""
    if not isinstance(choice, dict):
        raise where.error(name, "a choice object with 'message'", choice)
    message = where.get(choice, "message", dict, path=f"{name}.message", required=True)
    content = where.get(message, "content", str, path=f"{name}.message.content")
    tool_calls = check_tool_calls(where, message.get("tool_calls"), f"{name}.message.tool_calls")
    refusal = where.get(message, "refusal", str, path=f"{name}.message.refusal")
    finish_reason = where.get(choice, "finish_reason", str, path=f"{name}.finish_reason")
    # A structured refusal comes with null content: the refusal is then what the model said.
    text = render_output(content if content is not None else refusal, tool_calls)
    return text, finish_reason, tool_calls, refusal


def _as_id(where: Where, obj: dict, key: str, path: str) -> str | None:
    value = where.get(obj, key, (str, int), path=path)
    return None if value is None or value == "" else str(value)
