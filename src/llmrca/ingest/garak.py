"""garak red-team output, ``report.jsonl`` and ``hitlog.jsonl`` (format ``garak``).

A report mixes entry types: a ``start_run setup`` line (the run's configuration, flattened as
``plugins.model_name`` ...), an ``init`` line, then ``attempt``, ``eval``, ``completion`` and
``digest`` lines (and, in newer garak, ``plugin_cache``, ``probe_summary`` ...). garak logs each
attempt twice, at status 1 (answered) and at status 2 (answered and scored); only status-2
attempts become interactions, one per output; an output a detector scored at or over the run's
``eval_threshold`` is flagged. Attempt lines do not name the model, the run or the time, so the
adapter remembers the setup and init lines of each file it is reading.

The hitlog (``<run>.hitlog.jsonl``, written beside the report) has one line per detector hit: an
output of an attempt (``attempt_id``, ``attempt_idx``) and the detector that scored it. Each line
is a record of that same output, with the same identity (``<uuid>#<index>``), so it merges onto
the report's interaction and flags it (or stands for it when only the hitlog is ingested). See
docs/adapters.md for the field mapping.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from llmrca.ingest.formats import InteractionFormat, register_format
from llmrca.ingest.records import InteractionRecord, Skipped, Where, split_system

#: garak's entry types; sniffing on them keeps garak apart from every other JSONL format.
ENTRY_TYPES = ("start_run setup", "init", "attempt", "eval", "completion", "digest",
               "probe_summary", "plugin_cache", "payload_init", "tree_data")
#: ``Attempt.status`` once the detectors have scored the outputs (garak.attempt.ATTEMPT_COMPLETE).
ATTEMPT_COMPLETE = 2
#: garak counts an output as a hit when a detector's score reaches the run's ``eval_threshold``
#: (garak.evaluators.ThresholdEvaluator: a pass is a score under it); this when the setup is silent.
DEFAULT_EVAL_THRESHOLD = 0.5
#: The keys of a hitlog line (garak.evaluators.base.Evaluator, garak 0.17) that sniffing needs.
_HITLOG_KEYS = ("attempt_id", "detector", "score")
#: Where garak's setup line names the model, newest first (newer garak says target_*, older model_*).
_MODEL_KEYS = ("plugins.target_name", "plugins.model_name", "transient.model_name", "model_name")
_GENERATOR_KEYS = ("plugins.target_type", "plugins.model_type", "model_type")
#: How many files' run state the adapter keeps: enough for files read side by side.
_MAX_OPEN_FILES = 8


@dataclass
class _RunState:
    """What earlier lines of one report file said, for the attempt lines after them."""

    last_line: int = 0
    model_name: str | None = None
    generator: str | None = None
    run_id: str | None = None
    started: datetime | None = None
    garak_version: str | None = None
    eval_threshold: float = DEFAULT_EVAL_THRESHOLD
    seen: set[str] = field(default_factory=set)


@register_format
class GarakFormat(InteractionFormat):
    """garak ``report.jsonl``: completed attempts, one interaction per output."""

    name = "garak"
    description = ("garak report.jsonl (completed attempts; one interaction per output) or "
                   "hitlog.jsonl (detector hits, merged onto those interactions)")

    def __init__(self) -> None:
        self._runs: OrderedDict[str, _RunState] = OrderedDict()

    def sniff(self, record: Any) -> bool:
        if not isinstance(record, dict):
            return False
        return record.get("entry_type") in ENTRY_TYPES or (
            "entry_type" not in record and all(key in record for key in _HITLOG_KEYS))

    def parse(self, record: Any, where: Where) -> list[InteractionRecord | Skipped]:
        if not isinstance(record, dict):
            raise where.error(None, "a JSON object", record)
        run = self._run_state(where)
        if "entry_type" not in record and "attempt_id" in record:
            return [self._hit(record, where)]
        entry_type = where.get(record, "entry_type", str, required=True)
        if entry_type == "start_run setup":
            run.model_name = _first_string(where, record, _MODEL_KEYS)
            run.generator = _first_string(where, record, _GENERATOR_KEYS)
            run.run_id = _first_string(where, record, ("transient.run_id",)) or run.run_id
            run.started = run.started or where.timestamp(record.get("transient.starttime_iso"),
                                                         "transient.starttime_iso")
            threshold = where.get(record, "run.eval_threshold", (int, float))
            if threshold is not None:
                run.eval_threshold = float(threshold)
        elif entry_type == "init":
            run.run_id = _first_string(where, record, ("run",)) or run.run_id
            run.garak_version = _first_string(where, record, ("garak_version",))
            run.started = (where.timestamp(record.get("start_time"), "start_time")
                           or run.started)
        elif entry_type == "attempt":
            return self._attempt(record, where, run)
        else:
            return [Skipped(f"garak '{entry_type}' entries (run summaries, not interactions)")]
        return []

    def _run_state(self, where: Where) -> _RunState:
        """The state of the pass over ``where.file`` that this line belongs to.

        Lines of one pass come in increasing order, so a line at or before the last one seen
        starts a new pass (the file is read again): its state starts afresh, or re-reading a
        report would find every attempt already seen.
        """
        run = self._runs.get(where.file)
        if run is None or where.line is None or where.line <= run.last_line:
            run = _RunState()
            self._runs[where.file] = run
            while len(self._runs) > _MAX_OPEN_FILES:
                self._runs.popitem(last=False)
        self._runs.move_to_end(where.file)
        run.last_line = where.line or 0
        return run

    def _attempt(self, record: dict, where: Where, run: _RunState
                 ) -> list[InteractionRecord | Skipped]:
        status = where.get(record, "status", int, required=True)
        if status != ATTEMPT_COMPLETE:
            return [Skipped(f"status-{status} garak attempts (not yet scored)")]
        uuid = where.get(record, "uuid", str, required=True)
        if uuid in run.seen:
            return [Skipped("garak attempts logged again at status 2 (a resumed run)")]
        system_prompt, messages = split_system(_prompt_messages(where, record.get("prompt")))
        if not messages:
            raise where.error("prompt", "at least one turn besides the system prompt")
        outputs = where.get(record, "outputs", list, required=True)
        scores = _detector_results(where, record)
        probe = where.get(record, "probe_classname", str)
        goal = where.get(record, "goal", str)
        seq = where.get(record, "seq", int)
        notes = where.get(record, "notes", dict, default={})
        targets = where.get(record, "targets", list, default=[])
        intent = where.get(record, "intent", str)
        run_id = where.get(record, "run_id", str) or run.run_id

        records: list[InteractionRecord | Skipped] = []
        for i, output in enumerate(outputs):
            text = _output_text(where, output, f"outputs.{i}")
            if text is None:    # the generator returned nothing for this generation
                records.append(Skipped("null garak outputs (the generator returned nothing)"))
                continue
            output_scores = {detector: values[i] if i < len(values) else None
                             for detector, values in scores.items()}
            metadata: dict[str, Any] = {
                "probe": probe,
                "goal": goal,
                "seq": seq,
                "output_index": i,
                "detector_scores": output_scores,
                "notes": notes,
                "run_id": run_id,
            }
            if intent is not None:
                metadata["intent"] = intent
            if targets:
                metadata["targets"] = targets
            if run.generator:
                metadata["generator"] = run.generator
            if run.garak_version:
                metadata["garak_version"] = run.garak_version
            records.append(InteractionRecord(
                source_format=self.name,
                source_file=where.file,
                source_line=where.line,
                messages=messages,
                output=text,
                system_prompt=system_prompt,
                model_version=run.model_name,
                timestamp=run.started,      # attempts carry no time of their own
                source_id=f"{uuid}#{i}",
                metadata=metadata,
                flags={_flag(detector): _flag_reason(score)
                       for detector, score in output_scores.items()
                       if score is not None and score >= run.eval_threshold},
            ))
        run.seen.add(uuid)
        return records

    def _hit(self, record: dict, where: Where) -> InteractionRecord:
        """One hitlog line: the output a detector hit, as the record of that output (its
        identity is the report's, so it merges onto the report's interaction and flags it)."""
        uuid = where.get(record, "attempt_id", str, required=True)
        index = where.get(record, "attempt_idx", int, required=True)
        detector = where.get(record, "detector", str, required=True)
        score = where.get(record, "score", (int, float), required=True)
        system_prompt, messages = split_system(_prompt_messages(where, record.get("prompt")))
        if not messages:
            raise where.error("prompt", "at least one turn besides the system prompt")
        # "<target_type> <target_name>": the name is the report's model (plugins.target_name)
        generator = where.get(record, "generator", str) or ""
        kind, _, model = generator.partition(" ")
        metadata: dict[str, Any] = {
            "probe": where.get(record, "probe", str),
            "goal": where.get(record, "goal", str),
            "seq": where.get(record, "attempt_seq", int),
            "output_index": index,
            "run_id": where.get(record, "run_id", str),
        }
        if kind:
            metadata["generator"] = kind
        return InteractionRecord(
            source_format=self.name,
            source_file=where.file,
            source_line=where.line,
            messages=messages,
            output=_output_text(where, record.get("output"), "output"),
            system_prompt=system_prompt,
            model_version=model if model and model != "None" else None,
            source_id=f"{uuid}#{index}",
            metadata={k: v for k, v in metadata.items() if v is not None},
            flags={_flag(detector): _flag_reason(score)},
        )


def _flag(detector: str) -> str:
    return f"garak:{detector}"


def _flag_reason(score: float) -> str:
    return f"detector hit (score {float(score):g})"


def _prompt_messages(where: Where, prompt: Any) -> list[dict[str, Any]]:
    """``prompt``: a string (older garak), a Message ``{"text"}`` or a Conversation ``{"turns"}``."""
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    if not isinstance(prompt, dict):
        raise where.error("prompt", "a string or a conversation object with 'turns' (required)",
                          prompt)
    if "turns" not in prompt:
        return [{"role": "user", "content": _message_text(where, prompt, "prompt")}]
    turns = where.get(prompt, "turns", list, path="prompt.turns", required=True)
    messages = []
    for i, turn in enumerate(turns):
        name = f"prompt.turns.{i}"
        if not isinstance(turn, dict):
            raise where.error(name, "a turn object with 'role' and 'content'", turn)
        role = turn.get("role")
        if role not in ("system", "user", "assistant"):
            raise where.error(f"{name}.role", "one of system, user, assistant", role)
        content = turn.get("content")
        if isinstance(content, str):    # garak's legacy turns held the text directly
            text = content
        elif isinstance(content, dict):
            text = _message_text(where, content, f"{name}.content")
        else:
            raise where.error(f"{name}.content", "a message object with 'text'", content)
        messages.append({"role": role, "content": text})
    return messages


def _message_text(where: Where, message: dict, name: str) -> str:
    """A garak Message's text; an attachment-only message (image probes) has empty text."""
    text = message.get("text")
    if text is None and message.get("data_path"):
        return ""
    if not isinstance(text, str):
        raise where.error(f"{name}.text", "a string (required)", text)
    return text


def _output_text(where: Where, output: Any, name: str) -> str | None:
    """One output: a string (older garak), a Message ``{"text"}``, or null when none came."""
    if output is None or isinstance(output, str):
        return output
    if isinstance(output, dict):
        text = output.get("text")
        if text is None or isinstance(text, str):
            return text
        raise where.error(f"{name}.text", "a string or null", text)
    raise where.error(name, 'a string, a {"text": ...} object or null', output)


def _detector_results(where: Where, record: dict) -> dict[str, list[float | None]]:
    """``detector_results``: a score list per detector, one score per output (null: unscored)."""
    results = where.get(record, "detector_results", dict, default={})
    for detector, values in results.items():
        name = f"detector_results.{detector}"
        if not isinstance(values, list):
            raise where.error(name, "a list of scores, one per output", values)
        for j, value in enumerate(values):
            if value is not None and (isinstance(value, bool)
                                      or not isinstance(value, (int, float))):
                raise where.error(f"{name}.{j}", "a number or null", value)
    return results


def _first_string(where: Where, record: dict, keys: tuple[str, ...]) -> str | None:
    for key in keys:
        value = where.get(record, key, str)
        if value:
            return value
    return None
