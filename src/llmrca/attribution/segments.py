"""Prompt segments: named character spans of the system prompt and the turns, found without
being told what to look for.

:func:`auto_segments` splits a conversation by structure alone: the system prompt, each earlier
turn (tool outputs included, named by their role), and the last user turn into sentences (split
after ``.``, ``!``, ``?`` followed by white space or the end) and those into clauses (split after
``,``, ``;``, ``:`` and at line breaks). No vocabulary is consulted: a role-play frame at the start
of a request is a clause because of its punctuation, not its words. Every span keeps the
delimiter and the white space after it, so the spans of a turn concatenate to the turn and
deleting a span leaves well-formed text.

An analyst's own segments (:func:`analyst_segments`) are explicit character spans or strings.

:func:`locate` maps segments onto the prompt rendered with the model's chat template (the same
rendering replay uses) and :func:`segment_template` turns that into a captum template.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from llmrca.errors import InvalidArgumentError

__all__ = ["Segment", "analyst_segments", "auto_segments", "locate", "segment_template",
           "split_clauses"]

#: Sentence ends: . ! ? (runs of them, and closing quotes/brackets) then white space or the end.
_SENTENCE = re.compile(r"[.!?]+[\"')\]]*(?:\s+|$)")
#: Clause boundaries inside a sentence: , ; : then white space, or a line break.
_CLAUSE = re.compile(r"[,;:]+(?:\s+|$)|\n+\s*")


@dataclass(frozen=True)
class Segment:
    """A named span of one message's text.

    Attributes
    ----------
    name : str
        ``system``, ``turn 2 (assistant)``, ``user 1.2`` (sentence 1, clause 2 of the last user
        turn) or the analyst's name.
    kind : str
        ``system``, ``turn``, ``tool``, ``clause`` or ``analyst``.
    message : int
        Index into the messages (-1: the system prompt).
    start, end : int
        Character span in that message's text.
    text : str
        The span's text (delimiter and trailing white space included).
    """

    name: str
    kind: str
    message: int
    start: int
    end: int
    text: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Segment:
        return cls(**{k: data[k] for k in ("name", "kind", "message", "start", "end", "text")})


def _pieces(text: str, pattern: re.Pattern[str], start: int = 0,
            end: int | None = None) -> list[tuple[int, int]]:
    """Spans of ``text[start:end]`` cut after each match of ``pattern`` (matches kept left)."""
    end = len(text) if end is None else end
    spans, cursor = [], start
    for match in pattern.finditer(text, start, end):
        if match.end() > cursor and text[cursor:match.start()].strip():
            spans.append((cursor, match.end()))
            cursor = match.end()
    if text[cursor:end].strip():
        spans.append((cursor, end))
    elif spans:  # trailing white space joins the last piece
        spans[-1] = (spans[-1][0], end)
    return spans


def split_clauses(text: str) -> list[tuple[int, int, int, int]]:
    """``(sentence, clause, start, end)`` spans (1-based numbers) covering ``text``."""
    out = []
    for s, (s_start, s_end) in enumerate(_pieces(text, _SENTENCE), start=1):
        for c, (c_start, c_end) in enumerate(_pieces(text, _CLAUSE, s_start, s_end), start=1):
            out.append((s, c, c_start, c_end))
    # Leading white space of the text joins the first span.
    if out and out[0][2] > 0:
        s, c, _, e = out[0]
        out[0] = (s, c, 0, e)
    return out


def _last_user(messages: Sequence[dict[str, Any]]) -> int | None:
    for i in range(len(messages) - 1, -1, -1):
        if messages[i].get("role") == "user" and isinstance(messages[i].get("content"), str):
            return i
    return None


def auto_segments(system_prompt: str | None, messages: Sequence[dict[str, Any]]) -> list[Segment]:
    """Segments of a conversation by structure alone (see the module docstring)."""
    segments: list[Segment] = []
    if system_prompt and system_prompt.strip():
        segments.append(Segment("system", "system", -1, 0, len(system_prompt), system_prompt))
    last = _last_user(messages)
    for i, message in enumerate(messages):
        content = message.get("content")
        if not isinstance(content, str) or not content.strip():
            continue
        role = str(message.get("role", "?"))
        if i != last:
            kind = "tool" if role in ("tool", "function", "ipython") else "turn"
            segments.append(Segment(f"turn {i + 1} ({role})", kind, i, 0, len(content), content))
            continue
        for s, c, start, end in split_clauses(content):
            segments.append(Segment(f"user {s}.{c}", "clause", i, start, end,
                                    content[start:end]))
    return segments


def analyst_segments(system_prompt: str | None, messages: Sequence[dict[str, Any]],
                     specs: Sequence[Any]) -> list[Segment]:
    """Segments an analyst names: each spec is a string (its first occurrence in the last user
    turn, else the system prompt, else any turn), a ``(start, end)`` character span of the last
    user turn, or a dict ``{"name", "start", "end"[, "message"]}`` (message -1: the system
    prompt; default the last user turn).

    Raises
    ------
    InvalidArgumentError
        A string not found, a span out of range, or overlapping segments.
    """
    last = _last_user(messages)
    texts: dict[int, str] = {i: str(m.get("content")) for i, m in enumerate(messages)
                             if isinstance(m.get("content"), str)}
    if system_prompt:
        texts[-1] = system_prompt
    found: list[Segment] = []
    for n, spec in enumerate(specs, start=1):
        if isinstance(spec, str):
            if not spec:
                raise InvalidArgumentError("an analyst segment string is empty")
            order = ([last] if last is not None else []) + [-1] + sorted(k for k in texts if k >= 0)
            where = next((k for k in order if k in texts and spec in texts[k]), None)
            if where is None:
                raise InvalidArgumentError(f"segment {spec!r} is not in the prompt")
            start = texts[where].index(spec)
            found.append(Segment(f"analyst {n}", "analyst", where, start, start + len(spec), spec))
            continue
        bounds: tuple[Any, Any]
        if isinstance(spec, dict):
            name, message = str(spec.get("name") or f"analyst {n}"), spec.get("message", last)
            bounds = (spec.get("start"), spec.get("end"))
        elif isinstance(spec, (tuple, list)) and len(spec) == 2:
            name, message, bounds = f"analyst {n}", last, (spec[0], spec[1])
        else:
            raise InvalidArgumentError(f"segment spec {spec!r}: give a string, (start, end) or "
                                       f"{{'name', 'start', 'end', 'message'}}")
        if message not in texts:
            raise InvalidArgumentError(f"segment {name!r}: message {message} has no text")
        text = texts[message]
        try:
            start, end = int(bounds[0]), int(bounds[1])
        except (TypeError, ValueError):
            raise InvalidArgumentError(f"segment {name!r}: start and end must be integers") \
                from None
        if not 0 <= start < end <= len(text):
            raise InvalidArgumentError(f"segment {name!r}: span ({start}, {end}) is outside the "
                                       f"text (length {len(text)}) or empty")
        found.append(Segment(name, "analyst", int(message), start, end, text[start:end]))
    ordered = sorted(found, key=lambda s: (s.message, s.start))
    for a, b in itertools.pairwise(ordered):
        if a.message == b.message and b.start < a.end:
            raise InvalidArgumentError(f"segments {a.name!r} and {b.name!r} overlap")
    names = [s.name for s in found]
    if len(set(names)) != len(names):
        raise InvalidArgumentError(f"segment names repeat: {names}")
    return found


def locate(rendered: str, system_prompt: str | None, messages: Sequence[dict[str, Any]],
           segments: Sequence[Segment]) -> list[tuple[int, int]]:
    """Where each segment lies in the rendered prompt (character spans).

    Message texts are found in the rendered prompt in conversation order (the chat template
    writes them verbatim in that order).

    Raises
    ------
    InvalidArgumentError
        The template changed a message's text (it is not found verbatim), so spans cannot be
        mapped.
    """
    texts = ([(-1, system_prompt)] if system_prompt else []) + [
        (i, m.get("content")) for i, m in enumerate(messages)]
    offsets: dict[int, int] = {}
    cursor = 0
    for index, text in texts:
        if not isinstance(text, str) or not text:
            continue
        at = rendered.find(text, cursor)
        if at < 0:
            raise InvalidArgumentError(
                f"the chat template does not write message {index} verbatim; segments of it "
                f"cannot be mapped onto the rendered prompt (give analyst segments of other "
                f"messages)")
        offsets[index] = at
        cursor = at + len(text)
    spans = []
    for seg in segments:
        if seg.message not in offsets:
            raise InvalidArgumentError(f"segment {seg.name!r}: its message is not in the prompt")
        spans.append((offsets[seg.message] + seg.start, offsets[seg.message] + seg.end))
    return spans


def segment_template(rendered: str, spans: Sequence[tuple[int, int]]) -> tuple[str, list[str]]:
    """A ``str.format`` template of the rendered prompt with one ``{}`` per span, and the span
    texts (the values), in prompt order. Braces of the fixed text are escaped."""
    order = sorted(range(len(spans)), key=lambda i: spans[i][0])
    parts, cursor = [], 0
    for i in order:
        start, end = spans[i]
        if start < cursor:
            raise InvalidArgumentError("segments overlap in the rendered prompt")
        parts.append(rendered[cursor:start].replace("{", "{{").replace("}", "}}"))
        parts.append("{" + str(i) + "}")
        cursor = end
    parts.append(rendered[cursor:].replace("{", "{{").replace("}", "}}"))
    return "".join(parts), [rendered[s:e] for s, e in spans]
