"""Judge validation: a judge's sensitivity and specificity against human labels of a sample.

Label a sample of an incident's outputs by hand (a CSV or JSONL file of ``output,label`` or
``interaction_id,label``, or a DataFrame typed in a notebook), and :func:`validate_judge` runs the
judge on them and counts the 2x2 table: sensitivity = unsafe-labelled outputs the judge calls
``unsafe``, specificity = the others it does not, each with its Wilson interval. The incident's
logged offending outputs are positive labels for free (they are why there is an incident). The
counts are stored (``judge_validations``) under the judge's name and configuration hash, and
:meth:`JudgeValidation.correct` turns a judged rate into a rate corrected for the judge's error
(:func:`llmrca.stats.rogan_gladen`).
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmrca.errors import InvalidArgumentError, NotFoundError, ValidationError
from llmrca.judges.base import Judge

#: Human label values read as "unsafe" (the incident reproduced) and as not unsafe.
POSITIVE_LABELS = ("unsafe", "1", "true", "yes", "positive")
NEGATIVE_LABELS = ("safe", "refusal", "0", "false", "no", "negative")
#: Columns a label file may have (others are ignored).
LABEL_FIELDS = ("interaction_id", "output", "label", "prompt")


@dataclass(frozen=True, eq=False)
class JudgeValidation:
    """A judge checked against human labels.

    Attributes
    ----------
    incident_id, judge, judge_config_hash : str
        What was validated, on which incident's samples.
    true_positives, false_negatives, true_negatives, false_positives : int
        The 2x2 table (positive = labelled ``unsafe``; predicted positive = judged ``unsafe``).
    n_offending : int
        Positives that are the incident's logged offending outputs (labelled for free).
    sensitivity, specificity : RateEstimate
        ``TP / (TP + FN)`` and ``TN / (TN + FP)`` with Wilson intervals.
    labels_sha256 : str
        Hash of the labels used (the sample and its labels, and whether offending outputs counted).
    validation_id : str or None
        The stored row's id (None when not saved).
    samples : pandas.DataFrame
        One row per labelled sample: ``sample_id, source, output, human, judged, agree``.
    """

    incident_id: str
    judge: str
    judge_config_hash: str
    true_positives: int
    false_negatives: int
    true_negatives: int
    false_positives: int
    n_offending: int
    sensitivity: Any
    specificity: Any
    labels_sha256: str
    validation_id: str | None = None
    samples: Any = field(default=None, repr=False)

    @property
    def n(self) -> int:
        return (self.true_positives + self.false_negatives + self.true_negatives
                + self.false_positives)

    def correct(self, k: int, n: int, confidence: float = 0.95):
        """``k`` of ``n`` samples judged unsafe by this judge, corrected for its measured error.

        See :func:`llmrca.stats.rogan_gladen`; raises its error when the labels hold no positive
        or no negative, or the judge is no better than chance.
        """
        from llmrca.stats import rogan_gladen

        return rogan_gladen(k, n, (self.true_positives, self.true_positives + self.false_negatives),
                            (self.true_negatives, self.true_negatives + self.false_positives),
                            confidence)

    def summary(self) -> str:
        """Two lines: sensitivity and specificity with their intervals and counts."""
        se, sp = self.sensitivity, self.specificity

        def line(name, est, hit, total):
            if total == 0:
                return f"{name}: no samples labelled for it"
            return (f"{name} {est.rate:.3f} [{est.low:.3f}, {est.high:.3f}] "
                    f"({hit}/{total}, {est.confidence:.0%} Wilson)")

        return "\n".join([
            line("sensitivity", se, self.true_positives,
                 self.true_positives + self.false_negatives),
            line("specificity", sp, self.true_negatives,
                 self.true_negatives + self.false_positives)])

    def to_record(self) -> dict[str, Any]:
        """The fields stored in ``judge_validations``."""
        return {"incident_id": self.incident_id, "judge": self.judge,
                "judge_config_hash": self.judge_config_hash,
                "true_positives": self.true_positives, "false_negatives": self.false_negatives,
                "true_negatives": self.true_negatives, "false_positives": self.false_positives,
                "n_offending": self.n_offending, "labels_sha256": self.labels_sha256}


# -- reading labels ------------------------------------------------------------------------------
def _label_value(raw: Any, file: str, line: int | None) -> str:
    text = "" if raw is None else str(raw).strip().lower()
    if text in POSITIVE_LABELS:
        return "unsafe"
    if text in NEGATIVE_LABELS:
        return "safe"
    raise ValidationError(file, line, "label",
                          f"one of {', '.join(POSITIVE_LABELS)} (unsafe) or "
                          f"{', '.join(NEGATIVE_LABELS)} (not unsafe)", raw)


def _text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value)
    return text if text.strip() else None


def _record(raw: dict[str, Any], file: str, line: int | None) -> dict[str, Any]:
    interaction_id = _text(raw.get("interaction_id"))
    output = _text(raw.get("output"))
    if interaction_id is None and output is None:
        raise ValidationError(file, line, "output", "an 'output' or an 'interaction_id'",
                              raw.get("output"))
    if "label" not in raw:
        raise ValidationError(file, line, "label", "a 'label' field")
    return {"interaction_id": interaction_id, "output": output,
            "label": _label_value(raw.get("label"), file, line),
            "prompt": _text(raw.get("prompt")), "line": line, "file": file}


def read_labels(path: str | Path):
    """Human labels from a CSV (with a header) or JSONL file.

    Each row has ``label`` and ``output`` or ``interaction_id`` (optionally ``prompt``: the
    request, for judges that read it); other columns are ignored. A label is ``unsafe`` (or 1,
    true, yes, positive) or ``safe`` / ``refusal`` (or 0, false, no, negative).

    Returns
    -------
    pandas.DataFrame
        ``interaction_id, output, label (unsafe|safe), prompt, line, file``.

    Raises
    ------
    ValidationError
        With the file, the line and the field of the first bad row; an unreadable or empty file.
    """
    import pandas as pd

    path = Path(path)
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValidationError(name, None, None, "a readable UTF-8 label file (CSV or JSONL)",
                              str(exc)) from None
    rows = []
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValidationError(name, number, None, f"a JSON object ({exc.msg})",
                                      line) from None
            if not isinstance(raw, dict):
                raise ValidationError(name, number, None, "a JSON object", raw)
            rows.append(_record(raw, name, number))
    else:
        reader = csv.DictReader(text.splitlines(keepends=True))
        header = reader.fieldnames or []
        if "label" not in header or not ({"output", "interaction_id"} & set(header)):
            raise ValidationError(name, 1, "label" if "label" not in header else "output",
                                  "a CSV header with 'label' and 'output' or 'interaction_id'",
                                  ",".join(header))
        for raw in reader:
            if None in raw:   # more cells than the header has names
                raise ValidationError(name, reader.line_num, None,
                                      f"{len(header)} cells as in the header", raw[None])
            rows.append(_record(raw, name, reader.line_num))
    if not rows:
        raise ValidationError(name, None, None, "at least one labelled row")
    return pd.DataFrame(rows, columns=["interaction_id", "output", "label", "prompt", "line",
                                       "file"])


def labels_frame(frame, source: str = "<DataFrame>"):
    """Check labels typed in a notebook (a DataFrame with the columns of :func:`read_labels`).

    Errors name ``source`` and the row (1-based) as the line.
    """
    import pandas as pd

    if not hasattr(frame, "columns"):
        raise InvalidArgumentError(f"labels must be a DataFrame or a file path; got "
                                   f"{type(frame).__name__}")
    if "label" not in frame.columns or not ({"output", "interaction_id"} & set(frame.columns)):
        raise ValidationError(source, None, "label", "columns 'label' and 'output' or "
                              "'interaction_id'", list(map(str, frame.columns)))
    rows = [_record(raw, source, i) for i, raw in enumerate(frame.to_dict("records"), start=1)]
    if not rows:
        raise ValidationError(source, None, None, "at least one labelled row")
    return pd.DataFrame(rows, columns=["interaction_id", "output", "label", "prompt", "line",
                                       "file"])


# -- validating --------------------------------------------------------------------------------
def validate_judge(store, incident_id: str, judge: str | Judge, labels, *,
                   offending_as_positive: bool = True, confidence: float = 0.95,
                   save: bool = True) -> JudgeValidation:
    """Run ``judge`` on human-labelled samples of an incident; count its 2x2 table.

    Parameters
    ----------
    store : Store
        Holds the incident and its interactions (read through :mod:`llmrca.incidents`).
    incident_id : str
    judge : str or Judge
        A judge spec (``compliance``, ``guard-lm:/folder``) or a judge object.
    labels : path or DataFrame
        A label file (:func:`read_labels`) or a DataFrame (:func:`labels_frame`).
    offending_as_positive : bool
        Count the incident's logged offending outputs as ``unsafe`` labels (default). One that
        is also in ``labels`` (by interaction id, or the same output to the same request) keeps
        its human label.
    confidence : float
        Level of the Wilson intervals.
    save : bool
        Record the counts in ``judge_validations`` (when the store is open for writing).

    Each sample's context for the judge: its ``prompt`` column, else its interaction's last user
    turn, else the incident's offending request when all its offending interactions share one;
    the incident's first offending output (``incident_output``) and its category.

    Raises
    ------
    ValidationError
        A label row names an interaction the incident does not have (file, line, field).
    NotFoundError
        The incident is not in the store.
    """
    import pandas as pd

    from llmrca import incidents
    from llmrca.judges.selection import get_judge
    from llmrca.stats import rate
    from llmrca.store.replay import incident_record

    judge = get_judge(judge) if isinstance(judge, str) else judge
    if isinstance(labels, (str, Path)):
        table, source = read_labels(labels), str(labels)
    else:
        table, source = labels_frame(labels), "<DataFrame>"
    record = incident_record(store, incident_id)
    known = incidents.interactions(store, incident_id)
    by_id = {row["interaction_id"]: row for row in known.to_dict("records")}
    offending = known[(known["role"] == "offending") & known["output"].notna()]
    offending_prompts = set(offending["last_user"].dropna())
    shared_prompt = next(iter(offending_prompts)) if len(offending_prompts) == 1 else None
    context = {"category": record.get("category")}
    if len(offending):
        context["incident_output"] = offending["output"].iloc[0]

    samples = []
    for row in table.astype(object).where(table.notna(), None).to_dict("records"):
        output, prompt = row["output"], row["prompt"]
        if row["interaction_id"] is not None:
            found = by_id.get(row["interaction_id"])
            if found is None:
                raise ValidationError(row["file"], row["line"], "interaction_id",
                                      f"an interaction of incident '{incident_id}'",
                                      row["interaction_id"])
            output = output if output is not None else found["output"]
            prompt = prompt if prompt is not None else found["last_user"]
            if output is None:
                raise ValidationError(row["file"], row["line"], "interaction_id",
                                      "an interaction with a logged output",
                                      row["interaction_id"])
        samples.append({"sample_id": row["interaction_id"] or f"{source}:{row['line']}",
                        "source": "label", "output": output, "human": row["label"],
                        "prompt": prompt if prompt is not None else shared_prompt})
    n_offending = 0
    if offending_as_positive:
        labelled_ids = {s["sample_id"] for s in samples}
        labelled_pairs = {(s["output"], s["prompt"]) for s in samples}
        for row in offending.to_dict("records"):
            if row["interaction_id"] in labelled_ids \
                    or (row["output"], row["last_user"]) in labelled_pairs:
                continue
            samples.append({"sample_id": row["interaction_id"], "source": "offending",
                            "output": row["output"], "human": "unsafe",
                            "prompt": row["last_user"]})
            n_offending += 1

    frame = pd.DataFrame(samples, columns=["sample_id", "source", "output", "human", "prompt"])
    judged = judge.judge(frame[["sample_id", "output", "prompt"]].assign(
        prompt=frame["prompt"].astype(object)), context)
    frame["judged"] = list(judged["label"])
    positive, predicted = frame["human"] == "unsafe", frame["judged"] == "unsafe"
    tp, fn = int((positive & predicted).sum()), int((positive & ~predicted).sum())
    tn, fp = int((~positive & ~predicted).sum()), int((~positive & predicted).sum())
    frame["agree"] = positive == predicted
    digest = hashlib.sha256(json.dumps(
        {"labels": sorted([str(s), str(o), str(h)] for s, o, h in
                          zip(frame["sample_id"], frame["output"], frame["human"])),
         "offending_as_positive": offending_as_positive}, ensure_ascii=False).encode("utf-8")
    ).hexdigest()
    validation = JudgeValidation(
        incident_id=incident_id, judge=judge.name, judge_config_hash=judge.config_hash,
        true_positives=tp, false_negatives=fn, true_negatives=tn, false_positives=fp,
        n_offending=n_offending, sensitivity=rate(tp, tp + fn, confidence),
        specificity=rate(tn, tn + fp, confidence), labels_sha256=digest,
        samples=frame.drop(columns=["prompt"]))
    if save and not getattr(store, "read_only", False):
        from dataclasses import replace

        from llmrca.store.judge_validation import write_validation

        record = validation.to_record()
        record["details"] = {"labels_source": source, "confidence": confidence,
                             "offending_as_positive": offending_as_positive}
        validation = replace(validation, validation_id=write_validation(store, record))
    return validation


def stored_validation(store, judge: str | Judge, incident_id: str | None = None,
                      confidence: float = 0.95) -> JudgeValidation:
    """The latest stored validation of this judge (same name and configuration hash).

    Raises
    ------
    NotFoundError
        None is stored; the message says how to make one.
    """
    from llmrca.judges.selection import get_judge
    from llmrca.stats import rate
    from llmrca.store.judge_validation import validations_frame

    judge = get_judge(judge) if isinstance(judge, str) else judge
    frame = validations_frame(store, incident_id=incident_id, judge=judge.name,
                              judge_config_hash=judge.config_hash)
    if frame.empty:
        where = f" on incident '{incident_id}'" if incident_id else ""
        raise NotFoundError(f"no validation of judge '{judge.name}' (config "
                            f"{judge.config_hash}){where}; run `llmrca judges validate INCIDENT "
                            f"--judge {judge.name} --labels FILE`")
    row = frame.iloc[0]
    tp, fn, tn, fp = (int(row[c]) for c in ("true_positives", "false_negatives",
                                            "true_negatives", "false_positives"))
    return JudgeValidation(
        incident_id=row["incident_id"], judge=row["judge"],
        judge_config_hash=row["judge_config_hash"], true_positives=tp, false_negatives=fn,
        true_negatives=tn, false_positives=fp, n_offending=int(row["n_offending"]),
        sensitivity=rate(tp, tp + fn, confidence), specificity=rate(tn, tn + fp, confidence),
        labels_sha256=row["labels_sha256"], validation_id=row["validation_id"])
