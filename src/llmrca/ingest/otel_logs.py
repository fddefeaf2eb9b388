"""OpenTelemetry GenAI log events exported as OTLP JSON (format ``otel-genai-logs``).

One OTLP ``ExportLogsServiceRequest`` (``{"resourceLogs": [...]}``) per JSONL line, as the
OpenTelemetry Collector's file exporter writes them, or one ``.json`` document. Two kinds of
events hold a model call:

* ``gen_ai.client.inference.operation.details`` (semantic conventions 1.37+; what
  ``opentelemetry-instrumentation-openai-v2`` 2.x writes with
  ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=event_only`` or ``span_and_event``): one
  event per call whose attributes hold the whole call, messages as structured AnyValues
  (``arrayValue`` / ``kvlistValue``) rather than JSON text;
* the older per-message events (conventions 1.27-1.36, the instrumentation's v1.30 path with
  ``...CAPTURE_MESSAGE_CONTENT=true``): ``gen_ai.system.message``, ``gen_ai.user.message``,
  ``gen_ai.assistant.message``, ``gen_ai.tool.message`` and ``gen_ai.choice``, one log record
  each, in the record's ``body``, linked to their call by trace id and span id.

The event name is the record's ``eventName``, else its ``event.name`` attribute (older SDKs).
Every event of one (trace id, span id) in the file makes one interaction, whichever lines they
are on; its ``trace_id``/``span_id`` are those of the call's span, so the same call read from the
spans (``otel-genai``) or the provider's log (``openai-chat``, by ``response_id``) merges into
the same interaction. Message decoding is :mod:`llmrca.ingest.otel_genai`'s.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmrca.errors import ValidationError
from llmrca.ingest.formats import InteractionFormat, register_format
from llmrca.ingest.openai_chat import canonical_messages
from llmrca.ingest.otel_genai import (
    _ANY_VALUE_KINDS,
    _CONTENT_KEYS,
    _IDENTITY_KEYS,
    _MESSAGE_EVENTS,
    CONTENT_HINT,
    _answers,
    _any_value,
    _attributes,
    _Event,
    _input_messages,
    _instructions,
    _start_time,
    _string,
    answer_metadata,
    scope_of,
    tool_definitions,
)
from llmrca.ingest.records import InteractionRecord, Skipped, Where, split_system

#: The one event per call of semantic conventions 1.37+.
DETAILS_EVENT = "gen_ai.client.inference.operation.details"
#: Events of one call in the older conventions: the per-message ones and the choice.
_PER_MESSAGE = (*_MESSAGE_EVENTS, "gen_ai.choice")
#: Skip reason of calls whose events hold no content.
NO_CONTENT = "model-call events without captured content"


@dataclass
class _Call:
    """The events of one call (one trace id + span id) gathered across the file."""

    where: Where                        # of its first event
    trace_id: str | None
    span_id: str | None
    details: list[tuple[Where, str, dict[str, Any]]] = field(default_factory=list)
    messages: list[tuple[int, _Event]] = field(default_factory=list)   # (time, event)
    times: list[int] = field(default_factory=list)
    resource: dict[str, Any] = field(default_factory=dict)
    scope: dict[str, str] = field(default_factory=dict)
    events: list[str] = field(default_factory=list)


@register_format
class OtelGenAILogsFormat(InteractionFormat):
    """OTLP JSON log exports holding OpenTelemetry GenAI events."""

    name = "otel-genai-logs"
    description = ("OpenTelemetry GenAI log events as OTLP JSON (inference operation details, or "
                   "per-message events)")

    def sniff(self, record: Any) -> bool:
        return isinstance(record, dict) and isinstance(record.get("resourceLogs"), list)

    def parse(self, record: Any, where: Where) -> list[InteractionRecord | Skipped]:
        out = []
        for item in self._build([(where, _decode_export(where, record))]):
            if isinstance(item, ValidationError):
                raise item
            out.append(item)
        return out

    def parse_file(self, path: Path, records: Iterable[tuple[int, Any]]
                   ) -> Iterator[InteractionRecord | Skipped | ValidationError]:
        lines: list[tuple[Where, list[tuple[Where, str, dict[str, Any], dict]] | ValidationError]]
        lines = []
        for line, record in records:
            where = Where(str(path), line)
            if isinstance(record, ValidationError):
                lines.append((where, record))
                continue
            try:
                lines.append((where, _decode_export(where, record)))
            except ValidationError as exc:
                lines.append((where, exc))
        yield from self._build(lines)

    def _build(self, lines) -> Iterator[InteractionRecord | Skipped | ValidationError]:
        calls: dict[tuple[Any, ...], _Call] = {}
        skipped: dict[str, int] = {}

        def skip(reason: str, n: int = 1) -> None:
            skipped[reason] = skipped.get(reason, 0) + n

        for _, decoded in lines:
            if isinstance(decoded, ValidationError):
                yield decoded
                continue
            for k, (where, path, log, meta) in enumerate(decoded):
                name = meta["event"]
                if name != DETAILS_EVENT and name not in _PER_MESSAGE:
                    skip("non-GenAI log records" if not name.startswith("gen_ai.")
                         else f"other GenAI events ({name})")
                    continue
                trace_id, span_id = meta["trace_id"], meta["span_id"]
                if trace_id and span_id:
                    key: tuple[Any, ...] = (trace_id, span_id)
                elif name == DETAILS_EVENT:     # self-contained: one call on its own
                    key = ("record", where.file, where.line, path)
                else:
                    skip("per-message events without a trace/span id")
                    continue
                call = calls.get(key)
                if call is None:
                    call = calls[key] = _Call(where, trace_id, span_id,
                                              resource=meta["resource"], scope=meta["scope"])
                if meta["time"]:
                    call.times.append(meta["time"])
                call.events.append(name)
                if name == DETAILS_EVENT:
                    call.details.append((where, path, log))
                else:
                    call.messages.append((meta["time"] or 0, _Event(name, log, meta["payload"])))
        for call in calls.values():
            try:
                record = self._record(call)
            except ValidationError as exc:
                yield exc
                continue
            if record is None:
                skip(NO_CONTENT)
            else:
                yield record
        for reason, n in skipped.items():
            yield Skipped(reason, n, hint=CONTENT_HINT if reason == NO_CONTENT else None)

    def _record(self, call: _Call) -> InteractionRecord | None:
        if call.details:
            where, path, attrs = call.details[-1]     # one per call; a repeat: the last
            apath = f"{path}.attributes"
            system_parts = []
            if attrs.get("gen_ai.system_instructions") is not None:
                system_parts.append(_instructions(where, attrs["gen_ai.system_instructions"],
                                                  f"{apath}.gen_ai.system_instructions"))
            messages, input_field = _input_messages(where, attrs, [], apath)
            answers = _answers(where, attrs, [], apath)
        else:
            where, attrs, apath = call.where, {}, "logRecords"
            system_parts = []
            # Per-message events in the order they were written (time, then file order).
            events = [e for _, e in sorted(call.messages, key=lambda pair: pair[0])]
            messages, input_field = _input_messages(where, {}, events, apath)
            answers = _answers(where, {}, events, apath)
        if not messages and not answers and not system_parts:
            return None
        leading, messages = split_system(messages)
        if leading is not None:
            system_parts.append(leading)
        if not messages:
            raise where.error(input_field, "the call's input messages (at least one besides the "
                                           "system prompt)")
        metadata: dict[str, Any] = {}
        if call.trace_id and call.span_id:
            metadata.update(trace_id=call.trace_id, span_id=call.span_id)
        output = answer_metadata(answers, metadata)
        # What only the log record says goes under one key, apart from the span's metadata.
        metadata["otel_log"] = {
            "events": call.events,
            "attributes": {k: v for k, v in attrs.items()
                           if k not in _CONTENT_KEYS and k not in _IDENTITY_KEYS},
            "resource": dict(call.resource), "scope": dict(call.scope)}
        model = (_string(where, attrs, "gen_ai.response.model", apath)
                 or _string(where, attrs, "gen_ai.request.model", apath))
        timestamp = (_start_time(where, str(min(call.times)), "timeUnixNano") if call.times
                     else None)
        return InteractionRecord(
            source_format=self.name,
            source_file=where.file,
            source_line=where.line,
            messages=canonical_messages(messages),
            output=output,
            system_prompt="\n".join(system_parts) if system_parts else None,
            model_version=model,
            timestamp=timestamp,
            session_id=(_string(where, attrs, "gen_ai.conversation.id", apath)
                        or _string(where, attrs, "session.id", apath)),
            user_id=(_string(where, attrs, "user.id", apath)
                     or _string(where, attrs, "enduser.id", apath)),
            source_id=(f"{call.trace_id}:{call.span_id}" if call.trace_id and call.span_id
                       else f"line{where.line}:{path}"),
            metadata=metadata,
            response_id=_string(where, attrs, "gen_ai.response.id", apath),
            trace_id=call.trace_id,
            span_id=call.span_id,
            tools=tool_definitions(where, attrs.get("gen_ai.tool.definitions"),
                                   f"{apath}.gen_ai.tool.definitions"),
        )


def _decode_export(where: Where, record: Any
                   ) -> list[tuple[Where, str, dict[str, Any], dict[str, Any]]]:
    """``(where, path, attributes-or-body, info)`` for every log record of one export line."""
    if not isinstance(record, dict):
        raise where.error(None, "an OTLP JSON logs export object", record)
    out = []
    for r, resource_logs in enumerate(where.get(record, "resourceLogs", list, required=True)):
        rpath = f"resourceLogs.{r}"
        if not isinstance(resource_logs, dict):
            raise where.error(rpath, "a resourceLogs object", resource_logs)
        resource = where.get(resource_logs, "resource", dict, path=f"{rpath}.resource",
                             default={})
        resource_attrs = _attributes(where, resource.get("attributes"),
                                     f"{rpath}.resource.attributes")
        scopes_key = "scopeLogs" if "scopeLogs" in resource_logs else "instrumentationLibraryLogs"
        for s, scope_logs in enumerate(where.get(resource_logs, scopes_key, list,
                                                 path=f"{rpath}.{scopes_key}", default=[])):
            spath = f"{rpath}.{scopes_key}.{s}"
            if not isinstance(scope_logs, dict):
                raise where.error(spath, "a scopeLogs object", scope_logs)
            scope = scope_of(where, scope_logs, spath)
            for k, log in enumerate(where.get(scope_logs, "logRecords", list,
                                              path=f"{spath}.logRecords", default=[])):
                path = f"{spath}.logRecords.{k}"
                if not isinstance(log, dict):
                    raise where.error(path, "a log record object", log)
                attrs = _attributes(where, log.get("attributes"), f"{path}.attributes")
                name = log.get("eventName") or attrs.get("event.name") or ""
                if not isinstance(name, str):
                    raise where.error(f"{path}.eventName", "a string", name)
                body = log.get("body")
                if isinstance(body, dict) and len(body) == 1 and next(iter(body)) in _ANY_VALUE_KINDS:
                    body = _any_value(where, body, f"{path}.body")
                elif body == {}:
                    body = None
                payload_path = f"{path}.attributes"
                payload = {k: v for k, v in attrs.items() if k != "event.name"}
                if isinstance(body, dict):
                    # Per-message events put the message in the body; some exporters put the
                    # details there too. The body's fields win over same-named attributes.
                    payload = {**payload, **body}
                    payload_path = f"{path}.body"
                elif body is not None and name in _PER_MESSAGE:
                    raise where.error(f"{path}.body", "a kvlistValue (the event's fields)", body)
                time = _nanos(log.get("timeUnixNano")) or _nanos(log.get("observedTimeUnixNano"))
                out.append((where, path, payload, {
                    "event": name, "payload": payload_path, "time": time,
                    "trace_id": _hex(log.get("traceId")), "span_id": _hex(log.get("spanId")),
                    "resource": resource_attrs, "scope": scope}))
    return out


def _nanos(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
        return int(value) or None      # 0 is OTLP's "unset"
    return None


def _hex(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
