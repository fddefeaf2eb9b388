"""OpenTelemetry GenAI spans exported as OTLP JSON (format ``otel-genai``).

One OTLP export document (``{"resourceSpans": [...]}``) per JSONL line, or one ``.json`` document.
Each span that carries ``gen_ai.*`` attributes or events and captured message content becomes one
interaction. The current semantic conventions (``gen_ai.input.messages``,
``gen_ai.output.messages``, ``gen_ai.system_instructions``) are read, and so are the older forms
that existing logs still hold: ``gen_ai.prompt`` / ``gen_ai.completion`` attributes (JSON, plain
text, or flattened as ``gen_ai.prompt.0.content``) and the per-message span events
(``gen_ai.user.message``, ``gen_ai.choice``, ...). See docs/adapters.md for the field mapping.

The file is read whole (two passes): conversation and user ids are taken from the span itself,
else from its parent, grandparent, ... in the same trace, wherever in the file they are (the
instrumentation's ``chat`` spans hold none; the app's ``invoke_agent`` span does).
``execute_tool`` spans become ``tool_execution`` context items of the model call they belong
to; every other span left out is counted in a :class:`Skipped` with its reason.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from llmrca.errors import ValidationError
from llmrca.ingest.formats import InteractionFormat, register_format
from llmrca.ingest.openai_chat import (
    canonical_messages,
    canonical_tool_calls,
    check_tool_calls,
    render_output,
)
from llmrca.ingest.records import ROLES, InteractionRecord, Skipped, Where, split_system

#: Span attributes that hold conversation content: they become record fields, not metadata.
_CONTENT_KEYS = ("gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.system_instructions",
                 "gen_ai.prompt", "gen_ai.completion")
#: OpenLLMetry-style flattened content: ``gen_ai.prompt.0.role``, ``gen_ai.completion.0.content``.
_INDEXED = re.compile(r"^gen_ai\.(prompt|completion)\.(\d+)\.(.+)$")
#: Attributes that identify a person or session: the store hashes them, so metadata must not keep
#: them in the clear.
_IDENTITY_KEYS = ("user.id", "enduser.id", "session.id", "gen_ai.conversation.id")
#: ``gen_ai.operation.name`` values that are one call to a model. Other GenAI spans (invoke_agent,
#: execute_tool, embeddings, ...) wrap or sit beside those calls and are skipped.
_MODEL_CALLS = ("chat", "text_completion", "generate_content")
#: OpenLLMetry's ``llm.request.type`` values that are not a conversation with a model.
_NOT_CONVERSATIONS = ("embedding", "rerank")
#: Per-message span events of semantic conventions 1.27-1.36, and the role each one stands for.
_MESSAGE_EVENTS = {"gen_ai.system.message": "system", "gen_ai.user.message": "user",
                   "gen_ai.assistant.message": "assistant", "gen_ai.tool.message": "tool"}
_ANY_VALUE_KINDS = ("stringValue", "boolValue", "intValue", "doubleValue", "bytesValue",
                    "arrayValue", "kvlistValue")
_EPOCH = datetime(1970, 1, 1)
#: The attribute every OpenInference span carries: such exports are format ``openinference``.
OPENINFERENCE_KIND = "openinference.span.kind"


@dataclass(frozen=True)
class _Event:
    name: str
    payload: dict[str, Any]     # decoded attributes, or the body when an exporter kept one
    path: str                   # dotted field name of ``payload`` in the input


@dataclass(frozen=True)
class _Answer:
    content: str | None
    finish_reason: str | None
    tool_calls: list[dict[str, Any]] | None


@dataclass
class _Span:
    """One decoded span of an export line, kept for the second pass over the file."""

    where: Where
    path: str
    span: dict[str, Any]
    attrs: dict[str, Any]
    events: list[_Event]
    resource: dict[str, Any]
    scope: dict[str, str]
    trace_id: str | None
    span_id: str | None
    parent_span_id: str | None

    @property
    def operation(self) -> Any:
        return self.attrs.get("gen_ai.operation.name")

    @property
    def start(self) -> int:
        value = self.span.get("startTimeUnixNano")
        return int(value) if isinstance(value, (int, str)) and str(value).isdigit() else 0


@register_format
class OtelGenAIFormat(InteractionFormat):
    """OTLP JSON trace exports holding OpenTelemetry GenAI spans.

    The whole file is read in two passes (:meth:`parse_file`): the first indexes every span by
    (trace id, span id), the second builds one record per model-call span, resolving its
    conversation and user through its ancestors (the app's ``invoke_agent`` span usually holds
    ``gen_ai.conversation.id``, the instrumentation's ``chat`` span does not), wherever in the
    file they are, and attaching each ``execute_tool`` span to the call it belongs to.
    """

    name = "otel-genai"
    description = "OpenTelemetry GenAI spans as OTLP JSON (one export per line, or a .json document)"

    def sniff(self, record: Any) -> bool:
        return (isinstance(record, dict) and isinstance(record.get("resourceSpans"), list)
                and not has_span_attribute(record, OPENINFERENCE_KIND))

    def parse(self, record: Any, where: Where) -> list[InteractionRecord | Skipped]:
        """One export on its own (ancestors in other lines are not seen; see parse_file)."""
        out = []
        for item in self._build([(where.line, _decode_export(where, record))]):
            if isinstance(item, ValidationError):
                raise item
            out.append(item)
        return out

    def parse_file(self, path: Path, records: Iterable[tuple[int, Any]]
                   ) -> Iterator[InteractionRecord | Skipped | ValidationError]:
        lines: list[tuple[int | None, list[_Span] | ValidationError]] = []
        for line, record in records:
            if isinstance(record, ValidationError):
                lines.append((line, record))
                continue
            where = Where(str(path), line)
            try:
                lines.append((line, _decode_export(where, record)))
            except ValidationError as exc:
                lines.append((line, exc))
        yield from self._build(lines)

    def _build(self, lines: list[tuple[int | None, list[_Span] | ValidationError]]
               ) -> Iterator[InteractionRecord | Skipped | ValidationError]:
        tree = {(sp.trace_id, sp.span_id): sp for _, spans in lines if isinstance(spans, list)
                for sp in spans if sp.trace_id and sp.span_id}
        skipped: dict[str, int] = {}
        built: list[list[InteractionRecord] | ValidationError] = []
        calls: list[tuple[_Span, InteractionRecord]] = []
        tools: list[_Span] = []
        for _, spans in lines:
            if isinstance(spans, ValidationError):
                built.append(spans)
                continue
            out: list[tuple[_Span, InteractionRecord]] = []
            line_tools: list[_Span] = []
            line_skipped: dict[str, int] = {}
            try:
                for sp in spans:
                    reason = _not_a_model_call(sp)
                    if reason == "execute_tool":
                        line_tools.append(sp)
                    elif reason is not None:
                        line_skipped[reason] = line_skipped.get(reason, 0) + 1
                    else:
                        record = self._record(sp, tree)
                        if record is None:
                            line_skipped[NO_CONTENT] = line_skipped.get(NO_CONTENT, 0) + 1
                        else:
                            out.append((sp, record))
            except ValidationError as exc:      # one bad span rejects its export line
                built.append(exc)
                continue
            built.append([record for _, record in out])
            calls.extend(out)
            tools.extend(line_tools)
            for reason, n in line_skipped.items():
                skipped[reason] = skipped.get(reason, 0) + n
        for tool in tools:
            target = _tool_target(tool, calls)
            if target is None:
                skipped[NO_CALL_FOR_TOOL] = skipped.get(NO_CALL_FOR_TOOL, 0) + 1
            else:
                target.context.append(_tool_execution(tool))
        for item in built:
            if isinstance(item, ValidationError):
                yield item
            else:
                yield from item
        for reason, n in skipped.items():
            yield Skipped(reason, n, hint=CONTENT_HINT if reason == NO_CONTENT else None)

    def _record(self, sp: _Span, tree: dict[tuple[Any, Any], _Span]) -> InteractionRecord | None:
        where, path, attrs, events, span = sp.where, sp.path, sp.attrs, sp.events, sp.span
        apath = f"{path}.attributes"
        system_parts = []
        if attrs.get("gen_ai.system_instructions") is not None:
            system_parts.append(_instructions(where, attrs["gen_ai.system_instructions"],
                                              f"{apath}.gen_ai.system_instructions"))
        messages, input_field = _input_messages(where, attrs, events, apath)
        answers = _answers(where, attrs, events, apath)
        if not messages and not answers and not system_parts:
            return None     # content capture was off (the default), so nothing to investigate
        leading, messages = split_system(messages)
        if leading is not None:
            system_parts.append(leading)
        if not messages:
            raise where.error(input_field, "the span's input messages (at least one besides the "
                                           "system prompt)")

        trace_id = _hex_id(where, span, "traceId", path)
        span_id = _hex_id(where, span, "spanId", path)
        model = (_string(where, attrs, "gen_ai.response.model", apath)
                 or _string(where, attrs, "gen_ai.request.model", apath))
        metadata: dict[str, Any] = {"trace_id": trace_id, "span_id": span_id}
        if sp.parent_span_id:
            metadata["parent_span_id"] = sp.parent_span_id
        if isinstance(span.get("name"), str):
            metadata["span_name"] = span["name"]
        if isinstance(span.get("status"), dict) and span["status"]:
            metadata["status"] = span["status"]
        metadata["attributes"] = {key: value for key, value in attrs.items()
                                  if key not in _CONTENT_KEYS and key not in _IDENTITY_KEYS
                                  and not _INDEXED.match(key)}
        metadata["resource"] = dict(sp.resource)     # records of one export must not share it
        if sp.scope:
            metadata["scope"] = sp.scope
        output = answer_metadata(answers, metadata)
        session = (_string(where, attrs, "gen_ai.conversation.id", apath)
                   or _string(where, attrs, "session.id", apath)
                   or _from_ancestors(sp, tree, ("gen_ai.conversation.id", "session.id")))
        user = (_string(where, attrs, "user.id", apath)
                or _string(where, attrs, "enduser.id", apath)
                or _from_ancestors(sp, tree, ("user.id", "enduser.id")))
        return InteractionRecord(
            source_format=self.name,
            source_file=where.file,
            source_line=where.line,
            messages=canonical_messages(messages),
            output=output,
            system_prompt="\n".join(system_parts) if system_parts else None,
            model_version=model,
            timestamp=_start_time(where, span.get("startTimeUnixNano"),
                                  f"{path}.startTimeUnixNano"),
            session_id=session,
            user_id=user,
            source_id=f"{trace_id}:{span_id}",
            metadata=metadata,
            response_id=_string(where, attrs, "gen_ai.response.id", apath),
            trace_id=trace_id,
            span_id=span_id,
            parent_span_id=sp.parent_span_id,
            tools=tool_definitions(where, attrs.get("gen_ai.tool.definitions"),
                                   f"{apath}.gen_ai.tool.definitions"),
        )


#: Skip reason of model-call spans (and log events) whose content was not captured.
NO_CONTENT = "model-call spans without captured content"
#: Skip reason of execute_tool spans whose trace holds no model call to attach them to.
NO_CALL_FOR_TOOL = "execute_tool spans with no model call to attach to"
#: What to do about content that was not captured (shown once under the ingest summary).
CONTENT_HINT = (
    "OpenTelemetry GenAI instrumentations record message content only when asked (opt-in). "
    "Set OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=span_only (content on spans), "
    "event_only (in gen_ai.client.inference.operation.details log events) or span_and_event, "
    "with OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental "
    "(opentelemetry-instrumentation-openai-v2 2.x); instrumentations still on the v1.30 "
    "conventions take =true (per-message log events). Then export again.")


def answer_metadata(answers: list[_Answer], metadata: dict[str, Any]) -> str | None:
    """The output text of the first answer; its finish reason, tool calls and the other
    answers go to ``metadata`` (the same keys as openai-chat, so sources of one call agree)."""
    if not answers:
        return None
    first = answers[0]
    calls = canonical_tool_calls(first.tool_calls)
    metadata["finish_reason"] = first.finish_reason
    if calls:
        metadata["output_tool_calls"] = calls
    if len(answers) > 1:
        metadata["other_outputs"] = [render_output(a.content, a.tool_calls) for a in answers[1:]]
    return render_output(first.content, calls)


def tool_definitions(where: Where, value: Any, name: str) -> list[dict[str, Any]] | None:
    """``gen_ai.tool.definitions`` (JSON text or structured) in OpenAI's ``tools`` shape:
    semconv's flat ``{"type", "name", "description", "parameters"}`` becomes
    ``{"type": "function", "function": {...}}``; OpenAI-shaped entries stay as they are."""
    value = _json(where, value, name, plain_text=False)
    if value is None:
        return None
    if not isinstance(value, list):
        raise where.error(name, "a list of tool definitions", value)
    out = []
    for i, tool in enumerate(value):
        if not isinstance(tool, dict):
            raise where.error(f"{name}.{i}", "a tool definition object", tool)
        if "function" in tool or "name" not in tool:
            out.append(tool)
        else:
            function = {k: v for k, v in tool.items() if k != "type"}
            out.append({"type": tool.get("type") or "function", "function": function})
    return out or None


def _decode_export(where: Where, record: Any) -> list[_Span]:
    """Every span of one OTLP trace export, attributes and events decoded."""
    if not isinstance(record, dict):
        raise where.error(None, "an OTLP JSON export object", record)
    out = []
    for r, resource_spans in enumerate(where.get(record, "resourceSpans", list, required=True)):
        rpath = f"resourceSpans.{r}"
        if not isinstance(resource_spans, dict):
            raise where.error(rpath, "a resourceSpans object", resource_spans)
        resource = where.get(resource_spans, "resource", dict, path=f"{rpath}.resource",
                             default={})
        resource_attrs = _attributes(where, resource.get("attributes"),
                                     f"{rpath}.resource.attributes")
        # OTLP before 0.15 called scopeSpans "instrumentationLibrarySpans".
        scopes_key = ("scopeSpans" if "scopeSpans" in resource_spans
                      else "instrumentationLibrarySpans")
        for s, scope_spans in enumerate(where.get(resource_spans, scopes_key, list,
                                                  path=f"{rpath}.{scopes_key}", default=[])):
            spath = f"{rpath}.{scopes_key}.{s}"
            if not isinstance(scope_spans, dict):
                raise where.error(spath, "a scopeSpans object", scope_spans)
            scope_info = scope_of(where, scope_spans, spath)
            spans = where.get(scope_spans, "spans", list, path=f"{spath}.spans", default=[])
            for k, span in enumerate(spans):
                path = f"{spath}.spans.{k}"
                if not isinstance(span, dict):
                    raise where.error(path, "a span object", span)
                out.append(_Span(
                    where, path, span, _attributes(where, span.get("attributes"),
                                                   f"{path}.attributes"),
                    _events(where, span.get("events"), f"{path}.events"), resource_attrs,
                    scope_info, _optional_id(span.get("traceId")),
                    _optional_id(span.get("spanId")), _optional_id(span.get("parentSpanId"))))
    return out


def scope_of(where: Where, scope_block: dict[str, Any], path: str) -> dict[str, str]:
    """``{"name", "version"}`` of a scopeSpans / scopeLogs block's instrumentation scope."""
    scope_key = "scope" if "scope" in scope_block else "instrumentationLibrary"
    scope = where.get(scope_block, scope_key, dict, path=f"{path}.{scope_key}", default={})
    return {k: scope[k] for k in ("name", "version") if isinstance(scope.get(k), str) and scope[k]}


def _optional_id(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _not_a_model_call(sp: _Span) -> str | None:
    """None for a model-call span; ``"execute_tool"``; else the reason the span is skipped."""
    if not (any(key.startswith("gen_ai.") for key in sp.attrs)
            or any(event.name.startswith("gen_ai.") for event in sp.events)):
        return "non-GenAI spans"
    operation = sp.operation
    if operation == "execute_tool":
        return "execute_tool"
    if isinstance(operation, str) and operation not in _MODEL_CALLS:
        return f"non-chat spans ({operation})"
    request_type = sp.attrs.get("llm.request.type")
    if request_type in _NOT_CONVERSATIONS:
        return f"non-chat spans ({request_type})"
    return None


def _from_ancestors(sp: _Span, tree: dict[tuple[Any, Any], _Span], keys: tuple[str, ...]
                    ) -> str | None:
    """The first of ``keys`` set on the parent, else the grandparent, ... (same trace)."""
    seen = {sp.span_id}
    node = tree.get((sp.trace_id, sp.parent_span_id))
    while node is not None and node.span_id not in seen:
        seen.add(node.span_id)
        for key in keys:
            value = node.attrs.get(key)
            if isinstance(value, (str, int)) and not isinstance(value, bool) and value != "":
                return str(value)
        node = tree.get((node.trace_id, node.parent_span_id))
    return None


def _tool_target(tool: _Span, calls: list[tuple[_Span, InteractionRecord]]
                 ) -> InteractionRecord | None:
    """The model call an ``execute_tool`` span belongs to, in the same trace: the call whose
    output requested this tool call id; else the last call under the same parent that started
    before the tool; else the last call of the trace that started before it."""
    same_trace = [(sp, rec) for sp, rec in calls if sp.trace_id == tool.trace_id]
    call_id = tool.attrs.get("gen_ai.tool.call.id")
    if call_id is not None:
        for _, rec in same_trace:
            if any(c.get("id") == str(call_id)
                   for c in rec.metadata.get("output_tool_calls") or []):
                return rec
    before = sorted(((sp, rec) for sp, rec in same_trace if sp.start <= tool.start),
                    key=lambda pair: pair[0].start)
    siblings = [rec for sp, rec in before if sp.parent_span_id == tool.parent_span_id]
    if siblings:
        return siblings[-1]
    return before[-1][1] if before else None


def _tool_execution(tool: _Span) -> dict[str, Any]:
    """An ``execute_tool`` span as a ``context`` item of its model call."""
    attrs = tool.attrs
    item: dict[str, Any] = {"kind": "tool_execution"}
    for key, attr in (("name", "gen_ai.tool.name"), ("call_id", "gen_ai.tool.call.id"),
                      ("type", "gen_ai.tool.type"), ("description", "gen_ai.tool.description"),
                      ("arguments", "gen_ai.tool.call.arguments"),
                      ("result", "gen_ai.tool.call.result")):
        value = attrs.get(attr)
        if value is None:
            continue
        if key in ("arguments", "result") and isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                pass
        item[key] = value
    item["span_id"] = tool.span_id
    if isinstance(tool.span.get("name"), str):
        item["span_name"] = tool.span["name"]
    if isinstance(tool.span.get("status"), dict) and tool.span["status"]:
        item["status"] = tool.span["status"]
    return item


# --- OTLP JSON encoding ---------------------------------------------------------------------------

def has_span_attribute(record: dict[str, Any], key: str) -> bool:
    """Whether any span of an OTLP export carries the attribute ``key`` (no validation: a sniff)."""
    for resource_spans in record.get("resourceSpans") or []:
        if not isinstance(resource_spans, dict):
            continue
        for scope_spans in (resource_spans.get("scopeSpans")
                            or resource_spans.get("instrumentationLibrarySpans") or []):
            for span in (scope_spans.get("spans") or []) if isinstance(scope_spans, dict) else []:
                attributes = span.get("attributes") if isinstance(span, dict) else None
                if isinstance(attributes, list) and any(
                        isinstance(a, dict) and a.get("key") == key for a in attributes):
                    return True
    return False


def _attributes(where: Where, value: Any, path: str) -> dict[str, Any]:
    """An OTLP ``[{"key", "value": AnyValue}]`` list as a plain dict."""
    if value is None:
        return {}
    if not isinstance(value, list):
        raise where.error(path, "a list of {key, value} attributes", value)
    out: dict[str, Any] = {}
    for i, item in enumerate(value):
        if not isinstance(item, dict) or not isinstance(item.get("key"), str):
            raise where.error(f"{path}.{i}", "an attribute object with a string 'key'", item)
        out[item["key"]] = _any_value(where, item.get("value"), f"{path}.{item['key']}")
    return out


def _any_value(where: Where, value: Any, path: str) -> Any:
    """An OTLP AnyValue as the Python value it holds (``intValue`` may be a string in JSON)."""
    if value is None or value == {}:
        return None
    if isinstance(value, dict) and len(value) == 1:
        (kind, inner), = value.items()
        if kind == "stringValue" and isinstance(inner, str):
            return inner
        if kind == "boolValue" and isinstance(inner, bool):
            return inner
        if kind == "intValue" and not isinstance(inner, bool):
            if isinstance(inner, int):
                return inner
            if isinstance(inner, str) and re.fullmatch(r"-?\d+", inner):
                return int(inner)
        if kind == "doubleValue" and not isinstance(inner, bool):
            try:
                number = float(inner) if isinstance(inner, (int, float, str)) else None
            except ValueError:
                number = None
            if number is not None:
                # proto3 JSON writes NaN and infinities as strings; keep them so, since the
                # store's JSON columns accept no bare NaN.
                return number if math.isfinite(number) else str(inner)
        if kind == "bytesValue" and isinstance(inner, str):
            return inner
        if kind in ("arrayValue", "kvlistValue") and isinstance(inner, dict):
            values = inner.get("values") or []
            if kind == "kvlistValue":
                return _attributes(where, values, path)
            if isinstance(values, list):
                return [_any_value(where, v, f"{path}.{i}") for i, v in enumerate(values)]
        if kind in _ANY_VALUE_KINDS:
            raise where.error(path, f"a valid OTLP {kind}", value)
    raise where.error(path, "an OTLP AnyValue (" + ", ".join(_ANY_VALUE_KINDS) + ")", value)


def _events(where: Where, value: Any, path: str) -> list[_Event]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise where.error(path, "a list of span events", value)
    out = []
    for i, event in enumerate(value):
        epath = f"{path}.{i}"
        if not isinstance(event, dict):
            raise where.error(epath, "a span event object", event)
        name = where.get(event, "name", str, path=f"{epath}.name", default="")
        attrs = _attributes(where, event.get("attributes"), f"{epath}.attributes")
        # OTLP span events have no body; some converters copy a log record's body in anyway.
        body = event.get("body")
        if isinstance(body, dict) and len(body) == 1 and next(iter(body)) in _ANY_VALUE_KINDS:
            body = _any_value(where, body, f"{epath}.body")
        if isinstance(body, dict):
            out.append(_Event(name, {**attrs, **body}, f"{epath}.body"))
        else:
            out.append(_Event(name, attrs, f"{epath}.attributes"))
    return out


def _start_time(where: Where, value: Any, field_name: str) -> datetime | None:
    """``startTimeUnixNano`` exactly (no float rounding), as a naive UTC datetime."""
    if isinstance(value, int) and not isinstance(value, bool) or (
            isinstance(value, str) and value.isdigit()):
        nanos = int(value)
        if nanos == 0:      # OTLP's "unset"
            return None
        try:
            return _EPOCH + timedelta(microseconds=nanos // 1000)
        except OverflowError:
            raise where.error(field_name, "nanoseconds since the epoch", value) from None
    return where.timestamp(value, field_name)


def _hex_id(where: Where, span: dict, key: str, path: str) -> str:
    value = where.get(span, key, str, path=f"{path}.{key}", required=True)
    if not value:
        raise where.error(f"{path}.{key}", "a non-empty hex id", value)
    return value


def _string(where: Where, attrs: dict[str, Any], key: str, path: str) -> str | None:
    value = attrs.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise where.error(f"{path}.{key}", "a string", value)
    return str(value)


# --- conversation content -------------------------------------------------------------------------

def _input_messages(where: Where, attrs: dict[str, Any], events: list[_Event], apath: str
                    ) -> tuple[list[dict[str, Any]], str]:
    """The input messages (OpenAI shape) from the first form the span uses, and its field name."""
    if attrs.get("gen_ai.input.messages") is not None:
        name = f"{apath}.gen_ai.input.messages"
        return _message_list(where, attrs["gen_ai.input.messages"], name, plain_text=False), name
    if attrs.get("gen_ai.prompt") is not None:
        name = f"{apath}.gen_ai.prompt"
        return _message_list(where, attrs["gen_ai.prompt"], name, plain_text=True), name
    indexed = _indexed(attrs, "prompt")
    if indexed:
        return ([m for n, fields in indexed
                 for m in _flat_message(where, {"role": "user", **fields},
                                        f"{apath}.gen_ai.prompt.{n}")],
                f"{apath}.gen_ai.prompt")
    messages: list[dict[str, Any]] = []
    for event in events:
        if event.name in _MESSAGE_EVENTS:
            if event.payload.get("content") is None and not event.payload.get("tool_calls"):
                continue    # the event is there but its content was not captured
            messages.extend(_message(where, event.payload, event.path,
                                     role=_MESSAGE_EVENTS[event.name]))
        elif event.name == "gen_ai.content.prompt" and event.payload.get("gen_ai.prompt"):
            messages.extend(_message_list(where, event.payload["gen_ai.prompt"],
                                          f"{event.path}.gen_ai.prompt", plain_text=True))
    if messages:
        return messages, apath.removesuffix(".attributes") + ".events"
    return messages, f"{apath}.gen_ai.input.messages"


def _answers(where: Where, attrs: dict[str, Any], events: list[_Event], apath: str
             ) -> list[_Answer]:
    """The model's answers (choices), first one first, from the first form the span uses."""
    for key in ("gen_ai.output.messages", "gen_ai.completion"):
        if attrs.get(key) is not None:
            return _answer_list(where, attrs[key], f"{apath}.{key}",
                                plain_text=key == "gen_ai.completion")
    indexed = _indexed(attrs, "completion")
    if indexed:
        answers = []
        for n, fields in indexed:
            name = f"{apath}.gen_ai.completion.{n}"
            fields = {"role": "assistant", **fields}
            message = _flat_message(where, fields, name)[0]
            answers.append(_Answer(message["content"], _finish_reason(where, fields, name),
                                   message.get("tool_calls")))
        return answers
    answers = []
    choices = []
    for event in events:
        if event.name == "gen_ai.choice":
            choices.append(event)
        elif event.name == "gen_ai.content.completion" and event.payload.get("gen_ai.completion"):
            answers.extend(_answer_list(where, event.payload["gen_ai.completion"],
                                        f"{event.path}.gen_ai.completion", plain_text=True))
    for event in sorted(choices, key=lambda e: _choice_index(e.payload)):
        message = _json(where, event.payload.get("message"), f"{event.path}.message",
                        plain_text=False)
        if message is None:
            continue    # content not captured
        mpath = f"{event.path}.message"
        if not isinstance(message, dict):
            raise where.error(mpath, "a message object", message)
        if message.get("content") is None and not message.get("tool_calls"):
            continue
        converted = _message(where, {"role": "assistant", **message}, mpath)[0]
        answers.append(_Answer(converted["content"],
                               _finish_reason(where, event.payload, event.path),
                               converted.get("tool_calls")))
    return answers


def _message_list(where: Where, value: Any, name: str, *, plain_text: bool
                  ) -> list[dict[str, Any]]:
    """A JSON list of messages (OTel parts shape or OpenAI shape); plain text is one user turn."""
    value = _json(where, value, name, plain_text=plain_text)
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if not isinstance(value, list):
        raise where.error(name, "a JSON list of messages", value)
    return [m for i, message in enumerate(value) for m in _message(where, message, f"{name}.{i}")]


def _answer_list(where: Where, value: Any, name: str, *, plain_text: bool) -> list[_Answer]:
    value = _json(where, value, name, plain_text=plain_text)
    if isinstance(value, str):
        return [_Answer(value, None, None)]
    if not isinstance(value, list):
        raise where.error(name, "a JSON list of output messages", value)
    answers = []
    for i, message in enumerate(value):
        mpath = f"{name}.{i}"
        if not isinstance(message, dict):
            raise where.error(mpath, "an output message object", message)
        converted = _message(where, {"role": "assistant", **message}, mpath)
        # An answer is one message; a parts message holding tool responses can expand to several.
        content = "\n".join(m["content"] for m in converted if m["content"]) or None
        tool_calls = [c for m in converted for c in m.get("tool_calls", [])] or None
        answers.append(_Answer(content, _finish_reason(where, message, mpath), tool_calls))
    return answers


def _message(where: Where, message: Any, path: str, *, role: str | None = None
             ) -> list[dict[str, Any]]:
    """One message, in OTel parts shape or OpenAI shape, as OpenAI chat messages.

    Parts shape can hold a turn's text, tool calls and tool responses together; OpenAI shape
    needs one ``tool`` message per response, so one input message can give several.
    """
    if not isinstance(message, dict):
        raise where.error(path, "a message object with 'role'", message)
    role = message.get("role") or role
    if role not in ROLES:
        raise where.error(f"{path}.role", "one of " + ", ".join(ROLES), role)
    if "parts" in message:
        return _from_parts(where, message["parts"], role, f"{path}.parts")
    content = message.get("content")
    if isinstance(content, list):
        content = _join_text(where, content, f"{path}.content")
    elif role == "tool" and content is not None and not isinstance(content, str):
        content = json.dumps(content, ensure_ascii=False)   # a structured tool result
    elif content is not None and not isinstance(content, str):
        raise where.error(f"{path}.content", "a string, a list of parts or null", content)
    tool_calls = _tool_calls(where, message.get("tool_calls"), f"{path}.tool_calls")
    if content is None and not tool_calls:
        raise where.error(f"{path}.content", "a string (or tool_calls on an assistant turn)")
    out: dict[str, Any] = {"role": role, "content": content}
    if tool_calls:
        out["tool_calls"] = tool_calls
    call_id = message.get("tool_call_id") or (message.get("id") if role == "tool" else None)
    if call_id is not None:
        out["tool_call_id"] = str(call_id)
    return [out]


def _from_parts(where: Where, parts: Any, role: str, path: str) -> list[dict[str, Any]]:
    if not isinstance(parts, list):
        raise where.error(path, "a list of message parts", parts)
    texts: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    responses: list[dict[str, Any]] = []
    for j, part in enumerate(parts):
        ppath = f"{path}.{j}"
        if not isinstance(part, dict):
            raise where.error(ppath, "a message part object", part)
        kind = where.get(part, "type", str, path=f"{ppath}.type", required=True)
        if kind == "text":
            texts.append(where.get(part, "content", str, path=f"{ppath}.content", required=True))
        elif kind == "tool_call":
            name = where.get(part, "name", str, path=f"{ppath}.name", required=True)
            call: dict[str, Any] = {"type": "function",
                                    "function": {"name": name,
                                                 "arguments": _arguments(part.get("arguments"))}}
            if part.get("id") is not None:
                call = {"id": str(part["id"]), **call}
            tool_calls.append(call)
        elif kind == "tool_call_response":
            # The input-messages schema calls the payload "response", the output one "result".
            result = part["response"] if "response" in part else part.get("result")
            response = {"role": "tool", "content": result if isinstance(result, str)
                        else json.dumps(result, ensure_ascii=False)}
            if part.get("id") is not None:
                response["tool_call_id"] = str(part["id"])
            responses.append(response)
        # Other parts (reasoning, blob, uri, file) hold no chat text and are left out.
    out: list[dict[str, Any]] = []
    if texts or tool_calls or not responses:
        message: dict[str, Any] = {"role": role,
                                   "content": "\n".join(texts) if texts or not tool_calls
                                   else None}
        if tool_calls:
            message["tool_calls"] = tool_calls
        out.append(message)
    return out + responses


def _indexed(attrs: dict[str, Any], kind: str) -> list[tuple[int, dict[str, Any]]]:
    """``gen_ai.<kind>.<n>.<field>`` attributes grouped as ``[(n, {field: value})]`` by n."""
    groups: dict[int, dict[str, Any]] = {}
    for key, value in attrs.items():
        match = _INDEXED.match(key)
        if match and match.group(1) == kind:
            groups.setdefault(int(match.group(2)), {})[match.group(3)] = value
    return sorted(groups.items())


def _flat_message(where: Where, fields: dict[str, Any], path: str) -> list[dict[str, Any]]:
    """One flattened message (``role``, ``content``, ``tool_calls.<m>.name``, ...) in OpenAI shape."""
    calls: dict[int, dict[str, Any]] = {}
    for key, value in fields.items():
        match = re.fullmatch(r"tool_calls\.(\d+)\.(id|name|arguments)", key)
        if match:
            calls.setdefault(int(match.group(1)), {})[match.group(2)] = value
    message: dict[str, Any] = {key: fields[key]
                               for key in ("role", "content", "tool_call_id") if key in fields}
    if "content" not in message and "user" in fields:
        message["content"] = fields["user"]     # OpenLLMetry's text completions: prompt.0.user
    if calls:
        message["tool_calls"] = []
        for m, call in sorted(calls.items()):
            if not isinstance(call.get("name"), str):
                raise where.error(f"{path}.tool_calls.{m}.name", "a string (required)",
                                  call.get("name"))
            function = {"name": call["name"], "arguments": _arguments(call.get("arguments"))}
            entry: dict[str, Any] = {"type": "function", "function": function}
            if call.get("id") is not None:
                entry = {"id": str(call["id"]), **entry}
            message["tool_calls"].append(entry)
    return _message(where, message, path)


def _tool_calls(where: Where, value: Any, path: str) -> list[dict[str, Any]] | None:
    """OpenAI-shaped tool calls, with ``arguments`` as the JSON text OpenAI uses."""
    value = _json(where, value, path, plain_text=False)
    check_tool_calls(where, value, path)
    if not value:
        return None
    out = []
    for call in value:
        function = {**call["function"], "arguments": _arguments(call["function"].get("arguments"))}
        out.append({**call, "type": call.get("type") or "function", "function": function})
    return out


def _instructions(where: Where, value: Any, name: str) -> str:
    """``gen_ai.system_instructions``: a JSON list of parts (or a message, or plain text)."""
    value = _json(where, value, name, plain_text=True)
    if isinstance(value, str):
        return value
    if isinstance(value, dict):     # an early draft wrapped the parts in a system message
        if "parts" in value:
            value = value["parts"]
        else:
            value = value.get("content", value.get("message"))
            if isinstance(value, dict):
                value = [value]
            elif isinstance(value, str):
                return value
    if not isinstance(value, list):
        raise where.error(name, "a JSON list of instruction parts", value)
    return _join_text(where, value, name)


def _join_text(where: Where, parts: list[Any], path: str) -> str:
    from llmrca.ingest.records import join_text_parts  # the one rule for every adapter

    return join_text_parts(parts, where, path)


def _json(where: Where, value: Any, name: str, *, plain_text: bool) -> Any:
    """A structured attribute value: attributes hold JSON text, kvlists arrive already decoded."""
    if not isinstance(value, str):
        return value
    try:
        decoded = json.loads(value)
    except json.JSONDecodeError as exc:
        if plain_text:
            return value
        raise where.error(name, f"JSON text ({exc.msg} at column {exc.colno})", value) from None
    # Where plain text is allowed, text that merely parses as JSON ("42", "null") is still text.
    return value if plain_text and not isinstance(decoded, (list, dict)) else decoded


def _arguments(value: Any) -> str:
    if isinstance(value, str):
        return value
    return "{}" if value is None else json.dumps(value, ensure_ascii=False)


def _finish_reason(where: Where, obj: dict[str, Any], path: str) -> str | None:
    value = obj.get("finish_reason")
    if value is not None and not isinstance(value, str):
        raise where.error(f"{path}.finish_reason", "a string", value)
    return value


def _choice_index(payload: dict[str, Any]) -> int:
    index = payload.get("index")
    return index if isinstance(index, int) and not isinstance(index, bool) else 0
