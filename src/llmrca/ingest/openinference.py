"""OpenInference spans exported as OTLP JSON (format ``openinference``).

OpenInference (Arize Phoenix, ``openinference-instrumentation-openai`` / ``-langchain`` /
``-llama-index``, ...) writes valid OTLP trace exports, but its own semantic conventions: the span
type sits in the ``openinference.span.kind`` attribute (LLM, CHAIN, AGENT, TOOL, GUARDRAIL,
RETRIEVER, EMBEDDING, RERANKER, EVALUATOR, ...), not in the OTel span kind, and the conversation is
flattened into indexed keys (``llm.input_messages.<n>.message.role``, ``...message.content``,
``...message.contents.<m>.message_content.text``, ``...message.tool_calls.<m>.tool_call.function.name``)
that are regrouped here by index. Keys with empty values are absent.

* Each LLM span is one interaction. The flattened messages are preferred; ``input.value`` /
  ``output.value`` (the request and response bodies as JSON, or text) repeat them and are read only
  when a span has no flattened messages, so nothing is counted twice. The provider's response id is
  taken from ``output.value``'s JSON (``id``) so that the provider's own request log merges into the
  same interaction.
* ``session.id`` and ``user.id`` are taken from the span, else from its nearest ancestor that has
  them, across all the export lines of the file (the app usually sets them on a root AGENT/CHAIN).
* TOOL and GUARDRAIL spans become ``context`` items of the LLM call they belong to (rule in
  :func:`_owner`); a guardrail that blocked, flagged or redacted sets the call's ``flags``.
* Other spans (CHAIN, AGENT, EMBEDDING, RETRIEVER, ...) are counted as skipped, by kind.

See docs/adapters.md for the field mapping.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmrca.errors import ValidationError
from llmrca.ingest.formats import InteractionFormat, register_format
from llmrca.ingest.openai_chat import check_tool_calls, render_output
from llmrca.ingest.otel_genai import (
    OPENINFERENCE_KIND,
    _attributes,
    _start_time,
    has_span_attribute,
)
from llmrca.ingest.records import (
    ROLES,
    InteractionRecord,
    Skipped,
    Where,
    join_text_parts,
    split_system,
)

#: What OpenInference writes in place of a value its TraceConfig hides.
REDACTED = "__REDACTED__"
_INPUT = "llm.input_messages"
_OUTPUT = "llm.output_messages"
_MESSAGE = re.compile(r"^llm\.(input|output)_messages\.(\d+)\.message\.(.+)$")
_TOOL_CALL = re.compile(r"^tool_calls\.(\d+)\.tool_call\.(id|function\.name|function\.arguments)$")
_CONTENT_PART = re.compile(r"^contents\.(\d+)\.message_content\.(.+)$")
_TOOL_DEF = re.compile(r"^llm\.tools\.(\d+)\.tool\.(json_schema|name|description)$")
#: Roles other instrumentations write, as the OpenAI chat role they stand for.
_ROLE_ALIASES = {"human": "user", "ai": "assistant", "model": "assistant", "function": "tool"}
#: Request keys that are not sampling parameters (model is ``model_version``, user ids are hashed,
#: never kept in metadata; tools are read from ``llm.tools``).
_NOT_PARAMS = ("model", "messages", "tools", "functions", "user", "safety_identifier")
_IDENTITY = ("session.id", "user.id")
#: Attributes that become record fields or named metadata, so ``metadata.attributes`` does not
#: repeat them.
_READ = ("input.value", "output.value", "llm.invocation_parameters", "llm.model_name",
         "llm.provider", "llm.system", "llm.finish_reason", *_IDENTITY)
#: Guardrail results, as the decision llmrca records (``flags.guardrail``); "allow" sets no flag.
_DECISIONS = {"block": "block", "blocked": "block", "reject": "block", "rejected": "block",
              "deny": "block", "denied": "block", "fail": "block", "failed": "block",
              "flag": "flag", "flagged": "flag", "warn": "flag", "warning": "flag",
              "redact": "redact", "redacted": "redact", "modify": "redact", "modified": "redact",
              "allow": "allow", "allowed": "allow", "pass": "allow", "passed": "allow",
              "ok": "allow"}
_STRENGTH = {"block": 3, "redact": 2, "flag": 1}
HIDDEN_HINT = ("OpenInference left the prompts out of these LLM spans (OPENINFERENCE_HIDE_INPUTS, "
               "or hide_inputs=True in TraceConfig, where the app is traced): unset it to "
               "investigate from traces, or ingest the provider's request log of the same calls "
               "(format openai-chat)")


@dataclass
class _Span:
    where: Where
    path: str
    raw: dict[str, Any]
    attrs: dict[str, Any]
    trace_id: str
    span_id: str
    parent: str | None
    kind: str | None
    start: int
    end: int
    resource: dict[str, Any]
    scope: dict[str, str]
    order: int
    # filled for LLM spans: what the context rule matches on
    output_text: str | None = None
    last_user: str | None = None
    output_call_ids: tuple[str, ...] = ()
    context: list[dict[str, Any]] = field(default_factory=list)


@register_format
class OpenInferenceFormat(InteractionFormat):
    """OTLP JSON trace exports of OpenInference-instrumented apps."""

    name = "openinference"
    description = ("OpenInference spans (Phoenix, openinference-instrumentation-*) as OTLP JSON "
                   "(one export per line, or a .json document)")

    def sniff(self, record: Any) -> bool:
        return (isinstance(record, dict) and isinstance(record.get("resourceSpans"), list)
                and has_span_attribute(record, OPENINFERENCE_KIND))

    def parse(self, record: Any, where: Where) -> list[InteractionRecord | Skipped]:
        """One export on its own: ancestors on other lines are not seen (``parse_file`` sees them)."""
        items = list(self._records(_collect(record, where, 0)[0]))
        for item in items:
            if isinstance(item, ValidationError):
                raise item
        return items  # type: ignore[return-value]

    def parse_file(self, path: Path, records: Iterable[tuple[int, Any]]
                   ) -> Iterator[InteractionRecord | Skipped | ValidationError]:
        spans: list[_Span] = []
        for line, record in records:
            if isinstance(record, ValidationError):
                yield record
                continue
            try:
                found, _ = _collect(record, Where(str(path), line), len(spans))
            except ValidationError as exc:
                yield exc       # the line's spans are left out; the others still resolve
                continue
            spans.extend(found)
        yield from self._records(spans)

    def _records(self, spans: list[_Span]) -> Iterator[InteractionRecord | Skipped | ValidationError]:
        index = {(s.trace_id, s.span_id): s for s in spans}
        llms: dict[tuple[str, str], tuple[_Span, dict[str, Any] | Skipped | ValidationError]] = {}
        for span in spans:
            if span.kind == "LLM":
                try:
                    llms[(span.trace_id, span.span_id)] = (span, _llm_fields(span))
                except ValidationError as exc:
                    llms[(span.trace_id, span.span_id)] = (span, exc)
        usable = [s for s, fields in llms.values() if isinstance(fields, dict)]
        out: list[tuple[int, InteractionRecord | Skipped | ValidationError]] = []
        for span in spans:
            if span.kind in ("TOOL", "GUARDRAIL"):
                owner = _owner(span, usable, index)
                if owner is None:
                    out.append((span.order, Skipped(f"{span.kind} spans with no LLM call in the "
                                                    "file to attach to")))
                else:
                    owner.context.append(_context_item(span))
                    out.append((span.order, Skipped(f"{span.kind} spans (kept as context of "
                                                    "their LLM call)")))
            elif span.kind != "LLM":
                reason = (f"{span.kind} spans (not an LLM call)" if span.kind
                          else "spans without openinference.span.kind")
                out.append((span.order, Skipped(reason)))
        for span, fields in llms.values():
            if isinstance(fields, (Skipped, ValidationError)):
                out.append((span.order, fields))
            else:
                out.append((span.order, self._record(span, fields, index)))
        for _, item in sorted(out, key=lambda pair: pair[0]):
            yield item

    def _record(self, span: _Span, fields: dict[str, Any],
                index: dict[tuple[str, str], _Span]) -> InteractionRecord:
        metadata = fields["metadata"]
        session, session_from = _inherited(span, index, "session.id")
        user, user_from = _inherited(span, index, "user.id")
        if user is None:
            user = fields["request_user"]
        inherited = {k: v for k, v in (("session_from_span", session_from),
                                       ("user_from_span", user_from)) if v}
        metadata.update(inherited)
        context = sorted(span.context, key=lambda item: item.pop("_start"))
        flags: dict[str, str] = {}
        guardrail = None
        decisive = [item for item in context if item.get("decision") in _STRENGTH]
        if decisive:
            guardrail = max(decisive, key=lambda item: _STRENGTH[item["decision"]])
            flags["guardrail"] = guardrail["decision"]
        return InteractionRecord(
            source_format=self.name,
            source_file=span.where.file,
            source_line=span.where.line,
            messages=fields["messages"],
            output=fields["output"],
            system_prompt=fields["system_prompt"],
            model_version=fields["model"],
            timestamp=_start_time(span.where, span.raw.get("startTimeUnixNano"),
                                  f"{span.path}.startTimeUnixNano"),
            session_id=session,
            user_id=user,
            source_id=f"{span.trace_id}:{span.span_id}",
            guardrail=dict(guardrail) if guardrail else None,
            metadata=metadata,
            response_id=fields["response_id"],
            trace_id=span.trace_id,
            span_id=span.span_id,
            parent_span_id=span.parent,
            flags=flags,
            tools=fields["tools"],
            context=context,
        )


# --- OTLP structure -------------------------------------------------------------------------------

def _collect(record: Any, where: Where, order: int) -> tuple[list[_Span], int]:
    """The spans of one export document, with their resource and scope."""
    if not isinstance(record, dict):
        raise where.error(None, "an OTLP JSON export object", record)
    spans = []
    for r, resource_spans in enumerate(where.get(record, "resourceSpans", list, required=True)):
        rpath = f"resourceSpans.{r}"
        if not isinstance(resource_spans, dict):
            raise where.error(rpath, "a resourceSpans object", resource_spans)
        resource = where.get(resource_spans, "resource", dict, path=f"{rpath}.resource", default={})
        resource_attrs = _attributes(where, resource.get("attributes"),
                                     f"{rpath}.resource.attributes")
        scopes_key = "scopeSpans" if "scopeSpans" in resource_spans else "instrumentationLibrarySpans"
        for s, scope_spans in enumerate(where.get(resource_spans, scopes_key, list,
                                                  path=f"{rpath}.{scopes_key}", default=[])):
            spath = f"{rpath}.{scopes_key}.{s}"
            if not isinstance(scope_spans, dict):
                raise where.error(spath, "a scopeSpans object", scope_spans)
            scope_key = "scope" if "scope" in scope_spans else "instrumentationLibrary"
            scope = where.get(scope_spans, scope_key, dict, path=f"{spath}.{scope_key}", default={})
            scope_info = {k: scope[k] for k in ("name", "version")
                          if isinstance(scope.get(k), str) and scope[k]}
            for k, span in enumerate(where.get(scope_spans, "spans", list, path=f"{spath}.spans",
                                               default=[])):
                path = f"{spath}.spans.{k}"
                if not isinstance(span, dict):
                    raise where.error(path, "a span object", span)
                attrs = _attributes(where, span.get("attributes"), f"{path}.attributes")
                kind = attrs.get(OPENINFERENCE_KIND)
                parent = span.get("parentSpanId")
                spans.append(_Span(
                    where=where, path=path, raw=span, attrs=attrs,
                    trace_id=_id(where, span, "traceId", path, 16),
                    span_id=_id(where, span, "spanId", path, 8),
                    parent=_id(where, span, "parentSpanId", path, 8) if parent else None,
                    kind=kind.upper() if isinstance(kind, str) and kind else None,
                    start=_nanos(span.get("startTimeUnixNano")),
                    end=_nanos(span.get("endTimeUnixNano")),
                    resource=dict(resource_attrs), scope=scope_info, order=order))
                order += 1
    return spans, order


def _id(where: Where, span: dict, key: str, path: str, size: int) -> str:
    """A trace or span id as lowercase hex (the Collector's JSON); base64 (protobuf's JSON
    mapping) is converted."""
    value = where.get(span, key, str, path=f"{path}.{key}", required=True)
    if re.fullmatch(r"[0-9a-fA-F]+", value) and len(value) == 2 * size:
        return value.lower()
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) == size:
        return raw.hex()
    raise where.error(f"{path}.{key}", f"a {size}-byte id as hex (or base64)", value)


def _nanos(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return 0


def _inherited(span: _Span, index: dict[tuple[str, str], _Span], key: str
               ) -> tuple[str | None, str | None]:
    """``key`` from the span, else its nearest ancestor in the file; and the ancestor's span id."""
    current: _Span | None = span
    seen = set()
    while current is not None and current.span_id not in seen:
        seen.add(current.span_id)
        value = current.attrs.get(key)
        if isinstance(value, (str, int)) and not isinstance(value, bool) and value != "":
            return str(value), (None if current is span else current.span_id)
        current = index.get((span.trace_id, current.parent)) if current.parent else None
    return None, None


# --- one LLM span ---------------------------------------------------------------------------------

def _llm_fields(span: _Span) -> dict[str, Any] | Skipped:
    """The record fields of an LLM span, or why it gives no interaction."""
    where, attrs = span.where, span.attrs
    apath = f"{span.path}.attributes"
    groups = _grouped(attrs)
    request = _json_object(attrs.get("input.value"))
    response = _json_object(attrs.get("output.value"))

    messages = [_message(where, fields, f"{apath}.{_INPUT}.{n}") for n, fields in groups["input"]]
    if any(m["content"] == REDACTED for m in messages):
        messages = []       # hide_input_text: the texts are gone, input.value may still hold them
    if not messages:
        value = attrs.get("input.value")
        if value is None or value == "" or value == REDACTED:
            return Skipped("LLM spans whose input was not captured", hint=HIDDEN_HINT)
        from_value = _messages_from_value(where, value, request, f"{apath}.input.value")
        if from_value is None:
            return Skipped("LLM spans whose input.value holds no chat messages")
        messages = from_value
    system_prompt, messages = split_system(messages)
    if not messages:
        raise where.error(f"{apath}.{_INPUT}", "the span's input messages (at least one besides "
                                               "the system prompt)")
    span.last_user = next((m["content"] for m in reversed(messages) if m["role"] == "user"), None)

    metadata: dict[str, Any] = {}
    answers = [_message(where, {"role": "assistant", **fields}, f"{apath}.{_OUTPUT}.{n}")
               for n, fields in groups["output"]]
    if not answers and response is not None and isinstance(response.get("choices"), list):
        answers = _answers_from_choices(where, response["choices"], f"{apath}.output.value.choices")
    output = None
    if answers:
        first = answers[0]
        output = render_output(first["content"], first.get("tool_calls"))
        if first.get("tool_calls"):
            metadata["output_tool_calls"] = first["tool_calls"]
            span.output_call_ids = tuple(c["id"] for c in first["tool_calls"] if c.get("id"))
        if len(answers) > 1:
            metadata["other_outputs"] = [render_output(a["content"], a.get("tool_calls"))
                                         for a in answers[1:]]
        span.output_text = first["content"]
    elif attrs.get("output.value") == REDACTED:
        metadata["output_hidden"] = True
    elif isinstance(attrs.get("output.value"), str) and response is None and attrs["output.value"]:
        output = span.output_text = attrs["output.value"]      # a plain-text answer

    finish = attrs.get("llm.finish_reason")
    if finish is None and response is not None:
        choices = response.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            finish = choices[0].get("finish_reason")
    if isinstance(finish, str):
        metadata["finish_reason"] = finish

    params = _json_object(attrs.get("llm.invocation_parameters"))
    if params is None and request is not None:
        params = request
    request_params = {k: v for k, v in (params or {}).items() if k not in _NOT_PARAMS}
    tools = _tools(where, attrs, request, apath)
    if request_params:
        metadata["request_params"] = request_params
    request_user = next((str(params[k]) for k in ("user", "safety_identifier")
                         if params and isinstance(params.get(k), str) and params[k]), None)

    provider = attrs.get("llm.provider") or attrs.get("llm.system")
    if isinstance(provider, str):
        metadata["provider"] = provider
    counts = {key.removeprefix("llm.token_count."): value for key, value in attrs.items()
              if key.startswith("llm.token_count.")}
    if counts:
        metadata["token_counts"] = counts
    metadata["span_name"] = span.raw.get("name")
    if isinstance(span.raw.get("status"), dict) and span.raw["status"]:
        metadata["status"] = span.raw["status"]
    metadata["attributes"] = {key: value for key, value in attrs.items()
                              if key not in _READ and not _MESSAGE.match(key)
                              and not _TOOL_DEF.match(key)
                              and not key.startswith("llm.token_count.")}
    metadata["resource"] = dict(span.resource)
    if span.scope:
        metadata["scope"] = span.scope

    model = next((attrs[k] for k in ("llm.model_name", "llm.response.model_name",
                                     "llm.request.model_name")
                  if isinstance(attrs.get(k), str) and attrs[k]), None)
    if model is None and params and isinstance(params.get("model"), str):
        model = params["model"]
    response_id = None
    if response is not None and isinstance(response.get("id"), str) and response["id"] and (
            "choices" in response or "object" in response or response.get("type") == "message"):
        response_id = response["id"]
    return {"messages": messages, "system_prompt": system_prompt, "output": output,
            "model": model, "metadata": metadata, "response_id": response_id,
            "tools": tools, "request_user": request_user}


def _grouped(attrs: dict[str, Any]) -> dict[str, list[tuple[int, dict[str, Any]]]]:
    """``llm.{input,output}_messages.<n>.message.<field>`` as ``[(n, {field: value})]`` by n."""
    groups: dict[str, dict[int, dict[str, Any]]] = {"input": {}, "output": {}}
    for key, value in attrs.items():
        match = _MESSAGE.match(key)
        if match:
            groups[match.group(1)].setdefault(int(match.group(2)), {})[match.group(3)] = value
    return {side: sorted(found.items()) for side, found in groups.items()}


def _message(where: Where, fields: dict[str, Any], path: str) -> dict[str, Any]:
    """One regrouped message in OpenAI chat shape."""
    role = fields.get("role")
    role = _ROLE_ALIASES.get(role, role) if isinstance(role, str) else role
    if role not in ROLES:
        raise where.error(f"{path}.message.role", "one of " + ", ".join(ROLES), fields.get("role"))
    content = fields.get("content")
    if content is not None and not isinstance(content, str):
        raise where.error(f"{path}.message.content", "a string", content)
    parts: dict[int, dict[str, Any]] = {}
    calls: dict[int, dict[str, Any]] = {}
    for key, value in fields.items():
        if match := _CONTENT_PART.match(key):
            parts.setdefault(int(match.group(1)), {})[match.group(2)] = value
        elif match := _TOOL_CALL.match(key):
            calls.setdefault(int(match.group(1)), {})[match.group(2)] = value
    if content is None and parts:
        # The one rule for multi-part content (records.join_text_parts): text parts joined with
        # a newline, images, audio and the like left out.
        ordered = [part for _, part in sorted(parts.items())]
        if any(isinstance(part.get("text"), str) for part in ordered):
            content = join_text_parts(ordered, where, f"{path}.message.contents")
    tool_calls = []
    for m, call in sorted(calls.items()):
        name = call.get("function.name")
        if not isinstance(name, str):
            raise where.error(f"{path}.message.tool_calls.{m}.tool_call.function.name",
                              "a string (required)", name)
        arguments = call.get("function.arguments")
        entry: dict[str, Any] = {"type": "function",
                                 "function": {"name": name,
                                              "arguments": arguments if isinstance(arguments, str)
                                              else json.dumps(arguments or {})}}
        if call.get("id") is not None:
            entry = {"id": str(call["id"]), **entry}
        tool_calls.append(entry)
    if content is None and not tool_calls:
        content = ""        # OpenInference leaves empty values out
    out: dict[str, Any] = {"role": role, "content": content}
    if isinstance(fields.get("name"), str):
        out["name"] = fields["name"]
    if tool_calls:
        out["tool_calls"] = tool_calls
    if fields.get("tool_call_id") is not None:
        out["tool_call_id"] = str(fields["tool_call_id"])
    return out


def _json_object(value: Any) -> dict[str, Any] | None:
    if not isinstance(value, str) or not value.lstrip().startswith("{"):
        return None
    try:
        decoded = json.loads(value)
    except json.JSONDecodeError:
        return None
    return decoded if isinstance(decoded, dict) else None


def _messages_from_value(where: Where, value: Any, request: dict[str, Any] | None, path: str
                         ) -> list[dict[str, Any]] | None:
    """``input.value`` when a span has no flattened messages: a request body with ``messages``,
    or plain text (one user turn)."""
    if request is not None:
        if isinstance(request.get("messages"), list):
            return where.messages(request["messages"], f"{path}.messages")
        if isinstance(request.get("prompt"), str):
            return [{"role": "user", "content": request["prompt"]}]
        return None
    if isinstance(value, str) and not value.lstrip().startswith(("[", "{")):
        return [{"role": "user", "content": value}]
    return None


def _answers_from_choices(where: Where, choices: list[Any], path: str) -> list[dict[str, Any]]:
    answers = []
    for i, choice in enumerate(choices):
        message = choice.get("message") if isinstance(choice, dict) else None
        if not isinstance(message, dict):
            continue
        tool_calls = check_tool_calls(where, message.get("tool_calls"), f"{path}.{i}.message"
                                                                         ".tool_calls")
        content = message.get("content")
        answers.append({"role": "assistant",
                        "content": content if isinstance(content, str) else None,
                        **({"tool_calls": tool_calls} if tool_calls else {})})
    return answers


def _tools(where: Where, attrs: dict[str, Any], request: dict[str, Any] | None, apath: str
           ) -> list[dict[str, Any]] | None:
    """Tool definitions: ``llm.tools.<n>.tool.json_schema`` (JSON), else the request's ``tools``."""
    found: dict[int, dict[str, Any]] = {}
    for key, value in attrs.items():
        if match := _TOOL_DEF.match(key):
            found.setdefault(int(match.group(1)), {})[match.group(2)] = value
    tools = []
    for n, fields in sorted(found.items()):
        if "json_schema" in fields:
            schema = _json_object(fields["json_schema"])
            if schema is None:
                raise where.error(f"{apath}.llm.tools.{n}.tool.json_schema", "a JSON object",
                                  fields["json_schema"])
            tools.append(schema)
        elif isinstance(fields.get("name"), str):
            function = {"name": fields["name"]}
            if isinstance(fields.get("description"), str):
                function["description"] = fields["description"]
            tools.append({"type": "function", "function": function})
    if not tools and request is not None and isinstance(request.get("tools"), list):
        tools = [t for t in request["tools"] if isinstance(t, dict)]
    return tools or None


# --- TOOL and GUARDRAIL spans ---------------------------------------------------------------------

def _owner(span: _Span, llms: list[_Span], index: dict[tuple[str, str], _Span]) -> _Span | None:
    """The LLM call a TOOL or GUARDRAIL span belongs to (docs/adapters.md, "openinference"):

    1. an LLM span that is its ancestor;
    2. a TOOL span whose ``tool.id`` is a tool call id in an LLM span's output: that call;
    3. a GUARDRAIL whose ``input.value`` is an LLM span's output text (an output check): that call;
       one whose ``input.value`` is an LLM span's last user message (an input check): the first such
       call that starts after it;
    4. else among the LLM spans with the same parent (else the same trace): for a TOOL the last one
       started before it (the call that asked for the tool), for a GUARDRAIL the first one started
       after it (the call it let through), each falling back to the other direction.
    """
    same_trace = [llm for llm in llms if llm.trace_id == span.trace_id]
    parent = index.get((span.trace_id, span.parent)) if span.parent else None
    seen = set()
    while parent is not None and parent.span_id not in seen:
        seen.add(parent.span_id)
        if parent.kind == "LLM" and parent in same_trace:
            return parent
        parent = index.get((span.trace_id, parent.parent)) if parent.parent else None
    if span.kind == "TOOL":
        call_id = span.attrs.get("tool.id") or span.attrs.get("tool_call.id")
        asked = [llm for llm in same_trace if call_id and call_id in llm.output_call_ids]
        if asked:
            return _before(asked, span) or asked[0]
    else:
        checked = span.attrs.get("input.value")
        if isinstance(checked, str) and checked:
            answered = [llm for llm in same_trace if llm.output_text == checked]
            if answered:
                return _before(answered, span) or answered[-1]
            prompted = [llm for llm in same_trace if llm.last_user == checked]
            if prompted:
                return _after(prompted, span) or prompted[-1]
    siblings = [llm for llm in same_trace if llm.parent == span.parent] or same_trace
    if span.kind == "TOOL":
        return _before(siblings, span) or _after(siblings, span)
    return _after(siblings, span) or _before(siblings, span)


def _before(llms: list[_Span], span: _Span) -> _Span | None:
    earlier = [llm for llm in llms if (llm.start, llm.order) <= (span.start, span.order)]
    return max(earlier, key=lambda llm: (llm.start, llm.order)) if earlier else None


def _after(llms: list[_Span], span: _Span) -> _Span | None:
    later = [llm for llm in llms if (llm.start, llm.order) >= (span.start, span.order)]
    return min(later, key=lambda llm: (llm.start, llm.order)) if later else None


def _context_item(span: _Span) -> dict[str, Any]:
    attrs = span.attrs
    kind = span.kind or ""  # a TOOL or GUARDRAIL span: the caller checked
    item: dict[str, Any] = {"kind": kind.lower(), "name": attrs.get("tool.name")
                            or span.raw.get("name"), "span_id": span.span_id}
    if span.kind == "TOOL" and attrs.get("tool.id") is not None:
        item["tool_call_id"] = str(attrs["tool.id"])
    for key in ("input.value", "output.value"):
        if attrs.get(key) is not None:
            item[key.split(".")[0]] = attrs[key]
    if span.kind == "GUARDRAIL":
        decision, reason = _decision(attrs.get("output.value"))
        if decision:
            item["decision"] = decision
        if reason:
            item["reason"] = reason
        details = _json_object(attrs.get("metadata"))
        if details:
            item["metadata"] = details
    status = span.raw.get("status")
    if isinstance(status, dict) and status:
        item["status"] = status
    item["_start"] = (span.start, span.order)
    return item


def _decision(value: Any) -> tuple[str | None, str | None]:
    """A guardrail span's result, from its ``output.value`` (JSON with a decision, or a word)."""
    result = _json_object(value)
    if result is not None:
        reason = result.get("reason") if isinstance(result.get("reason"), str) else None
        for key in ("decision", "action", "result", "verdict", "status"):
            word = result.get(key)
            if isinstance(word, str) and word.strip().lower() in _DECISIONS:
                return _DECISIONS[word.strip().lower()], reason
        for key, when_true in (("blocked", "block"), ("flagged", "flag"), ("triggered", "flag")):
            if isinstance(result.get(key), bool):
                return (when_true if result[key] else "allow"), reason
        if isinstance(result.get("passed"), bool):
            return ("allow" if result["passed"] else "flag"), reason
        return None, reason
    if isinstance(value, str) and value.strip():
        word = re.split(r"[\s:;,.]+", value.strip().lower(), maxsplit=1)[0]
        return _DECISIONS.get(word), None
    return None, None
