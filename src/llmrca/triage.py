"""Triage: what happened, how far it reached, how bad it is, and what would contain it.

Everything here reads the store (never writes) and returns typed records or DataFrames with
documented columns; the triage notebook and the report only lay them out.

- :func:`timeline` — log and guardrail events per day, version and decision, with markers
  (detection, deployments, the offending calls).
- :func:`scope` — sessions, users and share of logged traffic that match the failure, per version
  and day, beside the incident's offending and context interactions.
- :func:`classify_incident` — a proposed category and severity, with the rule that gave each.
- :func:`containment_options` — rollback to the previous version and guardrail rules (shipped rule
  sets, a stricter production threshold), each with its measured effect on the offending set and
  on the context set (the false-positive cost).

"Matching the failure" means: the incident category's *failure signature* (a shipped rule set,
:data:`FAILURE_SIGNATURES`) labels the logged output ``unsafe``. Rule sets are what a production
guardrail runs, so the same check applies to logs, replays and containment.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from llmrca.store import Store, queries

__all__ = [
    "CONTAINMENT_COLUMNS",
    "FAILURE_SIGNATURES",
    "SCOPE_COLUMNS",
    "SEVERITY_LEVELS",
    "Classification",
    "Scope",
    "Timeline",
    "classify_incident",
    "containment_options",
    "failure_signature",
    "previous_version",
    "scope",
    "timeline",
]

#: Incident category -> the judge spec whose ``unsafe`` label says "this output is the failure".
FAILURE_SIGNATURES: dict[str, str] = {
    "jailbreak": "rules:jailbreak",
    "harmful-content": "rules:jailbreak",
    "privacy": "rules:privacy",
}
#: Rule sets tried, in order, to propose a category from the offending outputs.
CATEGORY_RULE_SETS: tuple[tuple[str, str], ...] = (("privacy", "rules:privacy"),
                                                   ("jailbreak", "rules:jailbreak"))
#: Severity levels, lowest first.
SEVERITY_LEVELS: tuple[str, ...] = ("low", "medium", "high", "critical")
#: Base severity per category (before the reach rule).
BASE_SEVERITY: dict[str, str] = {"privacy": "high", "jailbreak": "high", "harmful-content": "high",
                                 "prompt-injection": "high", "bias": "medium", "other": "low"}
#: Rule ids whose firing on an offending output means personal data was disclosed.
PERSONAL_DATA_RULES: frozenset[str] = frozenset({"pii-email", "pii-phone"})
#: Reach that raises severity one level: matching users, or share of the deployed version's traffic.
WIDE_REACH_USERS = 50
WIDE_REACH_SHARE = 0.05

#: Columns of :attr:`Scope.by_day` (``by_version`` has the same without ``day``, plus ``low`` and
#: ``high``: the 95% Wilson interval of ``share``).
SCOPE_COLUMNS = ("day", "model_version", "events", "matching", "share", "sessions",
                 "matching_sessions", "users", "matching_users")
#: Columns of :func:`containment_options`.
CONTAINMENT_COLUMNS = (
    "option", "kind", "source", "failure_before", "k_after", "n_after", "failure_after",
    "failure_after_low", "failure_after_high", "context_affected", "context_n", "context_rate",
    "note")


def _judge_outputs(spec: str, outputs: Sequence[Any], prompts: Sequence[Any] | None = None
                   ) -> pd.DataFrame:
    """``label`` and ``rule`` per output (empty outputs are judged as ``''``)."""
    from llmrca.judges import get_judge

    if len(outputs) == 0:
        return pd.DataFrame({"label": pd.Series(dtype=str), "rule": pd.Series(dtype=object)})
    prompts = prompts if prompts is not None else [None] * len(outputs)
    judged = get_judge(spec).judge(
        [{"sample_id": str(i), "output": "" if _missing(o) else str(o),
          "prompt": "" if _missing(p) else str(p)}
         for i, (o, p) in enumerate(zip(outputs, prompts))])
    return pd.DataFrame({"label": judged["label"].to_numpy(),
                         "rule": [d.get("rule") for d in judged["details"]]})


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def failure_signature(category: str | None) -> str | None:
    """The judge spec that recognises the failure in a logged output, or None (no rule set)."""
    return FAILURE_SIGNATURES.get(str(category or "").strip().lower().replace("_", "-"))


# -- timeline ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Timeline:
    """Events over time around an incident.

    Attributes
    ----------
    events : DataFrame
        ``bucket, model_version, stream, decision, events`` (see
        :func:`llmrca.store.queries.event_counts`): guardrail decisions per version are the rows
        with ``stream == "guardrail"``.
    markers : DataFrame
        ``ts, kind, label``: ``detected`` (the incident's detection), ``deployed`` (a version's
        deployment start, from the registry or the incident's ``rollout_at``), ``offending`` (each
        offending interaction).
    bucket : str
        ``day`` or ``hour``.
    """

    events: pd.DataFrame
    markers: pd.DataFrame
    bucket: str = "day"

    def guardrail(self) -> pd.DataFrame:
        """Guardrail decisions per bucket and version, wide: one column per decision."""
        rows = self.events[self.events["stream"] == "guardrail"]
        if rows.empty:
            return pd.DataFrame(columns=["bucket", "model_version"])
        return rows.pivot_table(index=["bucket", "model_version"], columns="decision",
                                values="events", aggfunc="sum", fill_value=0).reset_index()


def timeline(store: Store, incident_id: str, bucket: str = "day") -> Timeline:
    """Log and guardrail events per ``bucket`` with the incident's markers."""
    summary = queries.incident_summary(store, incident_id)     # NotFoundError if unknown
    record = summary.record
    events = queries.event_counts(store, incident_id, bucket)
    marks: list[dict[str, Any]] = []
    if not _missing(record.get("detected_at")):
        marks.append({"ts": pd.Timestamp(record["detected_at"]), "kind": "detected",
                      "label": f"detected ({record.get('detection_source') or 'unknown source'})"})
    from llmrca.store.model_registry import list_versions

    registered = list_versions(store)
    seen = set(events["model_version"]) if len(events) else set()
    for row in registered.itertuples():
        if row.name in seen and not pd.isna(row.deployed_from):
            marks.append({"ts": pd.Timestamp(row.deployed_from), "kind": "deployed",
                          "label": f"{row.name} deployed"})
    rollout = (record.get("metadata") or {}).get("rollout_at")
    deployed = record.get("deployed_model_version")
    if rollout and not any(m["kind"] == "deployed" and m["label"].startswith(f"{deployed} ")
                           for m in marks):
        ts = pd.Timestamp(rollout)
        marks.append({"ts": ts.tz_convert(None) if ts.tzinfo else ts, "kind": "deployed",
                      "label": f"{deployed or 'new version'} rolled out"})
    frame = queries.interaction_frame(store, incident_id)
    for row in frame[frame["role"] == "offending"].itertuples():
        if not _missing(row.ts) and row.ts is not pd.NaT:
            marks.append({"ts": pd.Timestamp(row.ts), "kind": "offending",
                          "label": f"offending call ({row.model_version})"})
    markers = pd.DataFrame(marks, columns=["ts", "kind", "label"])
    return Timeline(events=events, markers=markers.sort_values("ts").reset_index(drop=True),
                    bucket=bucket)


# -- scope -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Scope:
    """How far the failure reached in the logged traffic.

    Attributes
    ----------
    signature : str or None
        The judge spec that marks a logged output as the failure (None: the category has no
        failure signature, so nothing in the logs is counted as matching).
    by_day : DataFrame
        :data:`SCOPE_COLUMNS`: per day and version, logged outputs (``events``), how many match
        the failure, their ``share``, distinct sessions and users (all, and matching).
    by_version : DataFrame
        The same per version, with ``low``/``high`` (95% Wilson interval of ``share``).
    interactions : DataFrame
        ``model_version, offending, context``: the incident's interactions per role and version
        (the offending set against its context).
    matching : DataFrame
        The matching log events: ``event_id, ts, model_version, session_hash, user_hash, rule``.
    """

    signature: str | None
    by_day: pd.DataFrame
    by_version: pd.DataFrame
    interactions: pd.DataFrame
    matching: pd.DataFrame

    def version(self, model_version: str) -> dict[str, Any]:
        """One row of :attr:`by_version` as a dict (zeros when the version has no traffic)."""
        rows = self.by_version[self.by_version["model_version"] == model_version]
        if rows.empty:
            return {"model_version": model_version, "events": 0, "matching": 0, "share": 0.0,
                    "sessions": 0, "matching_sessions": 0, "users": 0, "matching_users": 0,
                    "low": 0.0, "high": 1.0}
        return rows.iloc[0].to_dict()


def _reach(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    grouped = frame.groupby(keys, dropna=False)
    out = grouped.agg(events=("event_id", "size"), matching=("matches", "sum"),
                      sessions=("session_hash", "nunique"), users=("user_hash", "nunique"))
    hit = frame[frame["matches"]]
    hits = hit.groupby(keys).agg(matching_sessions=("session_hash", "nunique"),
                                 matching_users=("user_hash", "nunique"))
    out = out.join(hits, how="left").fillna({"matching_sessions": 0, "matching_users": 0})
    out = out.reset_index()
    for column in ("events", "matching", "sessions", "users", "matching_sessions",
                   "matching_users"):
        out[column] = out[column].astype(int)
    out["share"] = [m / e if e else 0.0 for m, e in zip(out["matching"], out["events"])]
    return out


def scope(store: Store, incident_id: str, signature: str | None = None) -> Scope:
    """Sessions, users and share of traffic matching the failure, per version and day.

    Parameters
    ----------
    signature : str, optional
        A judge spec (``rules:privacy``); default: :func:`failure_signature` of the incident's
        category.
    """
    from llmrca.stats import rate

    record = queries.incident_summary(store, incident_id).record
    signature = signature or failure_signature(record.get("category"))
    logs = queries.log_outputs(store, incident_id)
    if signature and len(logs):
        judged = _judge_outputs(signature, list(logs["output"]), list(logs["prompt"]))
        logs = logs.assign(matches=(judged["label"] == "unsafe").to_numpy(),
                           rule=judged["rule"].to_numpy())
    else:
        logs = logs.assign(matches=False, rule=None)
    logs["day"] = pd.to_datetime(logs["ts"]).dt.floor("D")
    by_day = _reach(logs, ["day", "model_version"])[list(SCOPE_COLUMNS)] if len(logs) else \
        pd.DataFrame(columns=list(SCOPE_COLUMNS))
    by_version = _reach(logs, ["model_version"]) if len(logs) else \
        pd.DataFrame(columns=[c for c in SCOPE_COLUMNS if c != "day"])
    if len(by_version):
        intervals = [rate(int(k), int(n)) for k, n in zip(by_version["matching"],
                                                          by_version["events"])]
        by_version["low"] = [r.low for r in intervals]
        by_version["high"] = [r.high for r in intervals]
        by_version = by_version[[c for c in SCOPE_COLUMNS if c != "day"] + ["low", "high"]]
    frame = queries.interaction_frame(store, incident_id)
    if len(frame):
        roles = frame.pivot_table(index="model_version", columns="role", values="interaction_id",
                                  aggfunc="count", fill_value=0)
        roles = roles.reindex(columns=["offending", "context"], fill_value=0).reset_index()
        roles.columns.name = None
    else:
        roles = pd.DataFrame(columns=["model_version", "offending", "context"])
    matching = logs.loc[logs["matches"], ["event_id", "ts", "model_version", "session_hash",
                                          "user_hash", "rule"]].reset_index(drop=True)
    return Scope(signature=signature, by_day=by_day.reset_index(drop=True),
                 by_version=by_version.reset_index(drop=True), interactions=roles,
                 matching=matching)


# -- classification --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Classification:
    """A proposed category and severity, with the rule behind each.

    Attributes
    ----------
    category, severity : str
        The proposal.
    category_rule, severity_rule : str
        The rule that gave each, in words, with the counts it used.
    recorded_category, recorded_severity : str or None
        What the incident record says (the proposal does not change it).
    evidence : dict
        ``rule_hits`` (rule set -> offending outputs it labels unsafe), ``offending`` (how many
        offending outputs), ``personal_data_rules`` (personal-data rules that fired),
        ``matching_users`` and ``share`` on the deployed version.
    """

    category: str
    severity: str
    category_rule: str
    severity_rule: str
    recorded_category: str | None = None
    recorded_severity: str | None = None
    evidence: dict[str, Any] = field(default_factory=dict)

    def agrees(self) -> bool:
        """True when the proposal matches the record on both category and severity."""
        return (self.category == self.recorded_category
                and self.severity == self.recorded_severity)


def classify_incident(store: Store, incident_id: str, scope_result: Scope | None = None
                      ) -> Classification:
    """Propose a category and a severity from the offending outputs and the scope.

    Category: the first of :data:`CATEGORY_RULE_SETS` that labels most offending outputs
    ``unsafe``; else the recorded category; else ``other``. Severity: the category's
    :data:`BASE_SEVERITY`; ``critical`` for privacy when a personal-data rule fired on an
    offending output; one level up (at most ``critical``) when the failure reached at least
    :data:`WIDE_REACH_USERS` users or :data:`WIDE_REACH_SHARE` of the deployed version's traffic.
    """
    record = queries.incident_summary(store, incident_id).record
    frame = queries.interaction_frame(store, incident_id)
    offending = frame[frame["role"] == "offending"]
    outputs = [o for o in offending["output"] if not _missing(o)]
    n = len(outputs)
    hits: dict[str, int] = {}
    fired_rules: set[str] = set()
    for category, spec in CATEGORY_RULE_SETS:
        judged = _judge_outputs(spec, outputs)
        unsafe = judged[judged["label"] == "unsafe"]
        hits[spec] = len(unsafe)
        fired_rules.update(str(r) for r in unsafe["rule"] if r)
    recorded = record.get("category")
    chosen = next(((c, s) for c, s in CATEGORY_RULE_SETS if n and hits[s] * 2 > n), None)
    if chosen:
        category = chosen[0]
        category_rule = (f"{chosen[1]} labels {hits[chosen[1]]} of {n} offending outputs unsafe "
                         f"(the first rule set, in the order "
                         f"{', '.join(s for _, s in CATEGORY_RULE_SETS)}, to fire on most)")
    elif recorded:
        category = str(recorded)
        category_rule = (f"no shipped rule set fires on most of the {n} offending outputs; "
                         f"the recorded category is kept")
    else:
        category, category_rule = "other", "no rule set fires and no category is recorded"
    base = BASE_SEVERITY.get(category, "medium")
    personal = sorted(fired_rules & PERSONAL_DATA_RULES) if category == "privacy" else []
    if personal:
        level, why = "critical", (f"privacy with personal data disclosed ({', '.join(personal)} "
                                  f"fired on offending outputs) is critical")
    else:
        level, why = base, f"the base severity of {category} is {base}"
    scope_result = scope_result or scope(store, incident_id)
    deployed = record.get("deployed_model_version")
    reach = scope_result.version(str(deployed)) if deployed else \
        {"matching_users": int(scope_result.matching["user_hash"].nunique()), "share": 0.0}
    users, share = int(reach["matching_users"]), float(reach["share"])
    if users >= WIDE_REACH_USERS or share >= WIDE_REACH_SHARE:
        raised = SEVERITY_LEVELS[min(SEVERITY_LEVELS.index(level) + 1, len(SEVERITY_LEVELS) - 1)]
        why += (f"; raised to {raised}: the failure reached {users} users / {share:.1%} of "
                f"{deployed}'s traffic (thresholds {WIDE_REACH_USERS} users or "
                f"{WIDE_REACH_SHARE:.0%})")
        level = raised
    else:
        why += (f"; not raised: {users} matching users and {share:.1%} of "
                f"{deployed or 'the'} traffic stay under {WIDE_REACH_USERS} users and "
                f"{WIDE_REACH_SHARE:.0%}")
    return Classification(
        category=category, severity=level, category_rule=category_rule, severity_rule=why,
        recorded_category=None if _missing(recorded) else recorded,
        recorded_severity=None if _missing(record.get("severity")) else record.get("severity"),
        evidence={"rule_hits": hits, "offending": n, "personal_data_rules": personal,
                  "matching_users": users, "share": share})


# -- containment -----------------------------------------------------------------------------------

def previous_version(store: Store, incident_id: str) -> str | None:
    """The version before the deployed one: the record's ``metadata.previous_model_version``,
    else the deployed version's registered parent."""
    record = queries.incident_summary(store, incident_id).record
    previous = (record.get("metadata") or {}).get("previous_model_version")
    if previous:
        return str(previous)
    deployed = record.get("deployed_model_version")
    if deployed:
        from llmrca.store.model_registry import list_versions

        registered = list_versions(store)
        parent = registered.loc[registered["name"] == deployed, "parent"]
        if len(parent) and not pd.isna(parent.iloc[0]):
            return str(parent.iloc[0])
    return None


def _row(option: str, kind: str, source: str, before: float, k: int | None, n: int | None,
         context_affected: int | None, context_n: int | None, note: str) -> dict[str, Any]:
    from llmrca.stats import rate

    after = rate(k, n) if k is not None and n else None
    return {"option": option, "kind": kind, "source": source, "failure_before": before,
            "k_after": k, "n_after": n, "failure_after": after.rate if after else math.nan,
            "failure_after_low": after.low if after else math.nan,
            "failure_after_high": after.high if after else math.nan,
            "context_affected": context_affected, "context_n": context_n,
            "context_rate": (context_affected / context_n)
            if context_n and context_affected is not None else math.nan,
            "note": note}


def containment_options(store: Store, incident_id: str, *, replay: Any = None,
                        scope_result: Scope | None = None) -> pd.DataFrame:
    """Containment options with their measured effect (:data:`CONTAINMENT_COLUMNS`).

    - ``rollback`` to :func:`previous_version`: with ``replay`` (a
      :class:`~llmrca.replay.ReplayResult` that includes it), its reproduction rate on the
      offending set against the deployed version's (``source = replay``); otherwise, from the
      logs, the share of its traffic that matches the failure against the deployed version's
      (``source = logs``), and as context the share of its logged outputs that are refusals.
    - ``guardrail-rule``: each output rule of the shipped rule sets. ``failure_after`` is the
      share of offending outputs it does *not* fire on; ``context_rate`` the share of context
      outputs it fires on: the context interactions when the incident has some (a false-positive
      rate), else every logged output (an upper bound: the traffic includes the failures).
    - ``guardrail-threshold``: when the offending interactions carry the production guardrail's
      score, blocking at the lowest offending score, against the logged guardrail events that
      reach that score but were allowed.

    ``failure_before`` is the failure rate without the option (1.0 on the offending set; the
    deployed version's rate for a rollback).
    """
    from llmrca.judges import load_rules, shipped_rule_sets
    from llmrca.judges.rules import RuleJudge, RuleSet

    record = queries.incident_summary(store, incident_id).record
    deployed = record.get("deployed_model_version")
    previous = previous_version(store, incident_id)
    rows: list[dict[str, Any]] = []
    if previous:
        used_replay = False
        if replay is not None:
            try:
                after = replay.rate(previous)
                before = replay.rate(str(deployed)).rate if deployed else math.nan
                rows.append(_row(f"roll back to {previous}", "rollback", "replay", before,
                                 after.k, after.n, None, None,
                                 f"reproduction rate on the offending set, replayed (deployed "
                                 f"{deployed}: {before:.1%})"))
                used_replay = True
            except LookupError:
                pass
        if not used_replay:
            scope_result = scope_result or scope(store, incident_id)
            prev, dep = scope_result.version(previous), scope_result.version(str(deployed))
            logs = queries.log_outputs(store, incident_id)
            prev_logs = logs[logs["model_version"] == previous]
            dep_logs = logs[logs["model_version"] == deployed]
            refusals = int((_judge_outputs("refusal", list(prev_logs["output"]))["label"]
                            == "refusal").sum()) if len(prev_logs) else None
            dep_refusals = int((_judge_outputs("refusal", list(dep_logs["output"]))["label"]
                                == "refusal").sum()) if len(dep_logs) else 0
            dep_share = dep_refusals / len(dep_logs) if len(dep_logs) else math.nan
            rows.append(_row(
                f"roll back to {previous}", "rollback", "logs", float(dep["share"]),
                int(prev["matching"]), int(prev["events"]) or None,
                refusals, len(prev_logs) or None,
                f"share of {previous}'s logged traffic matching the failure (deployed "
                f"{deployed}: {float(dep['share']):.1%}); context: refusals in its traffic "
                f"(deployed: {dep_share:.1%})"))
    frame = queries.interaction_frame(store, incident_id)
    offending = [o for o in frame.loc[frame["role"] == "offending", "output"] if not _missing(o)]
    context_rows = frame[frame["role"] == "context"]
    if len(context_rows):
        context = [o for o in context_rows["output"] if not _missing(o)]
        context_note = "context: the incident's context interactions (false-positive rate)"
    else:
        context = list(queries.log_outputs(store, incident_id)["output"])
        context_note = ("context: every logged output (an upper bound on false positives: "
                        "it includes the failures)")
    for set_name, path in shipped_rule_sets().items():
        rule_set = load_rules(path)
        for rule in rule_set.rules:
            if rule.applies_to != "output":
                continue
            judge = RuleJudge(RuleSet(file=rule_set.file, name=f"{set_name}/{rule.id}",
                                      rules=(rule,)))
            fired_off = sum(judge.judge_one(o, {}).label == rule.label for o in offending)
            fired_ctx = sum(judge.judge_one(str(o), {}).label == rule.label for o in context)
            rows.append(_row(f"rule {set_name}/{rule.id}", "guardrail-rule", "rules",
                             1.0, len(offending) - fired_off, len(offending) or None,
                             fired_ctx, len(context) or None,
                             f"{rule.description.strip()} {context_note}".strip()))
    threshold_row = _threshold_option(store, incident_id, frame)
    if threshold_row is not None:
        rows.append(threshold_row)
    return pd.DataFrame(rows, columns=list(CONTAINMENT_COLUMNS))


def _threshold_option(store: Store, incident_id: str, frame: pd.DataFrame
                      ) -> dict[str, Any] | None:
    scores: list[tuple[str, float]] = []
    for text in frame.loc[frame["role"] == "offending", "guardrail"]:
        if _missing(text) or not text:
            continue
        value = json.loads(text)
        if isinstance(value, dict) and isinstance(value.get("score"), (int, float)) \
                and value.get("rule"):
            scores.append((str(value["rule"]), float(value["score"])))
    if not scores:
        return None
    rule = max({r for r, _ in scores}, key=lambda r: sum(1 for x, _ in scores if x == r))
    threshold = min(s for r, s in scores if r == rule)
    events = queries.guardrail_scores(store, incident_id)
    allowed = events[(events["decision"] == "allow")]
    would_block = int((allowed["score"] >= threshold).sum())
    return _row(f"block {rule} at score >= {threshold:.3f}", "guardrail-threshold",
                "guardrail logs", 1.0, 0, len(scores), would_block, len(allowed) or None,
                f"the production guardrail let the offending calls through (scores "
                f"{min(s for _, s in scores):.3f}-{max(s for _, s in scores):.3f}); context: "
                f"allowed guardrail events that would be blocked too (false-positive rate)")
