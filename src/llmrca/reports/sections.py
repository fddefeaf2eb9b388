"""Report sections: a registry, so later steps add hypotheses, root cause and more.

A section is a function ``build(inputs) -> tuple of blocks`` (or ``None`` to leave the section
out), registered with a name, a title and an order. The shipped sections follow the
post-incident structure: summary, detection, triage, containment, reproduction, investigation,
remediation and its verification, impact, lessons, appendix (provenance).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from llmrca.registry import Registry
from llmrca.reports.document import Block, Bullets, Figure, Table, Text
from llmrca.reports.stages import Stage

__all__ = ["SECTIONS", "ReportInputs", "SectionSpec", "available_sections", "register_section"]


@dataclass
class ReportInputs:
    """What a section builder may read.

    Attributes
    ----------
    incident_id : str
    record : dict
        The incident record (title, category, severity, detected_at, ...).
    stages : dict
        Notebook name -> :class:`~llmrca.reports.stages.Stage` (the other notebooks' results).
    parameters : dict
        The run's parameters.
    store : Store or None
        The store, open read-only, for sections that read stored results directly.
    provenance : dict
        Package versions, run ids, interpreter (filled by the report).
    findings : dict
        Parts of ``findings.json`` read from the store while it was open (``root_cause``).
    """

    incident_id: str
    record: dict[str, Any]
    stages: dict[str, Stage]
    parameters: dict[str, Any] = field(default_factory=dict)
    store: Any = None
    provenance: dict[str, Any] = field(default_factory=dict)
    findings: dict[str, Any] = field(default_factory=dict)

    def stage(self, name: str) -> Stage | None:
        return self.stages.get(name)


@dataclass(frozen=True)
class SectionSpec:
    """A registered section."""

    name: str
    title: str
    order: int
    build: Callable[[ReportInputs], tuple[Block, ...] | None]


SECTIONS: Registry[SectionSpec] = Registry("report section")


def register_section(name: str, title: str, order: int, *, replace: bool = False):
    """Decorator: register ``build(inputs)`` as a report section."""
    def _add(build: Callable[[ReportInputs], tuple[Block, ...] | None]):
        SECTIONS.register(name, SectionSpec(name, title, order, build), replace=replace)
        return build
    return _add


def available_sections() -> list[SectionSpec]:
    """Registered sections in report order."""
    return sorted((SECTIONS.get(n) for n in SECTIONS), key=lambda s: (s.order, s.name))


# -- helpers ----------------------------------------------------------------------------------------

def _pct(value: Any) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "n/a"
    return "n/a" if math.isnan(v) else f"{v:.1%}"


def _figure(name: str, draw: Callable[[], Any], caption: str) -> Figure | None:
    from llmrca.viz import to_png

    try:
        fig = draw()
    except Exception as exc:  # noqa: BLE001 - a figure must never sink the report; say why
        return Figure(name, b"", f"{caption} (not drawn: {type(exc).__name__}: {exc})")
    return Figure(name, to_png(fig), caption)


def _blocks(*items: Block | None) -> tuple[Block, ...]:
    return tuple(b for b in items if b is not None and not (isinstance(b, Figure) and not b.png))


def _missing(stage_name: str) -> tuple[Block, ...]:
    return (Text(f"No results: the {stage_name} notebook was not part of this run."),)


def _reproduction_reading(stage: Stage) -> str:
    data = stage.data
    on, off = data.get("reproduces_on") or [], data.get("not_on") or []
    if not on:
        return "It did not reproduce on any replayed version (lower end of the 95% interval " \
               "under 5% everywhere)."
    text = f"It reproduces on {', '.join(on)}"
    return text + (f" and not on {', '.join(off)}." if off else ".")


def _rate_columns(rates: pd.DataFrame) -> pd.DataFrame:
    """The rate table shown in the report: whatever interval columns the replay offered."""
    wanted = ["model_version", "variant", "k", "n", "rate", "low", "high", "cluster_low",
              "cluster_high", "corrected_rate", "corrected_low", "corrected_high", "method"]
    return rates[[c for c in wanted if c in rates.columns]]


# -- the shipped sections ---------------------------------------------------------------------------

@register_section("summary", "Summary", 10)
def _summary(inputs: ReportInputs):
    r = inputs.record
    items = [f"Incident {inputs.incident_id}: {r.get('title', '')}",
             (f"Category {r.get('category') or 'unknown'}, severity "
              f"{r.get('severity') or 'unknown'}, status {r.get('status') or 'unknown'}; "
              f"deployed version {r.get('deployed_model_version') or 'unknown'}.")]
    triage = inputs.stage("triage")
    if triage:
        c = triage.data.get("classification", {})
        items.append(f"Triage proposes {c.get('category')} / {c.get('severity')}.")
    reproduction = inputs.stage("reproduction")
    if reproduction:
        items.append(_reproduction_reading(reproduction))
    if triage:
        deployed = triage.data.get("deployed_scope", {})
        if deployed:
            items.append(f"In the logs, {deployed.get('matching', 0)} of "
                         f"{deployed.get('events', 0)} outputs of {deployed.get('model_version')}"
                         f" ({_pct(deployed.get('share'))}) match the failure, from "
                         f"{deployed.get('matching_users', 0)} users.")
    return (Bullets(tuple(items)),)


@register_section("detection", "Detection", 20)
def _detection(inputs: ReportInputs):
    r = inputs.record
    blocks: list[Block] = [Bullets((
        (f"Detected at {r.get('detected_at') or 'unknown'} (UTC) by "
         f"{r.get('detection_source') or 'an unknown source'}."),
        f"Reported summary: {' '.join(str(r.get('summary') or '').split()) or '(none)'}"))]
    triage = inputs.stage("triage")
    if triage:
        markers = triage.table("timeline_markers")
        offending = markers[markers["kind"] == "offending"] if len(markers) else markers
        if len(offending):
            blocks.append(Text(f"First offending call {offending['ts'].min()}, last "
                               f"{offending['ts'].max()} ({len(offending)} calls)."))
    return tuple(blocks)


@register_section("triage", "Triage: scope and severity", 30)
def _triage(inputs: ReportInputs):
    stage = inputs.stage("triage")
    if stage is None:
        return _missing("triage")
    from llmrca.triage import Timeline
    from llmrca.viz import scope_figure, timeline_figure

    c = stage.data.get("classification", {})
    events = stage.table("timeline_events")
    if len(events):
        events = events.assign(bucket=pd.to_datetime(events["bucket"]))
    markers = stage.table("timeline_markers")
    if len(markers):
        markers = markers.assign(ts=pd.to_datetime(markers["ts"]))
    by_day = stage.table("scope_by_day")
    if len(by_day):
        by_day = by_day.assign(day=pd.to_datetime(by_day["day"]))
    timeline = Timeline(events=events, markers=markers, bucket=str(stage.data.get("bucket", "day")))
    return _blocks(
        Bullets(((f"Proposed category: {c.get('category')} (recorded: "
                  f"{c.get('recorded_category')}). Rule: {c.get('category_rule')}"),
                 (f"Proposed severity: {c.get('severity')} (recorded: "
                  f"{c.get('recorded_severity')}). Rule: {c.get('severity_rule')}"),
                 f"Failure signature used on the logs: {stage.data.get('signature') or 'none'}")),
        Table(stage.table("scope_by_version"),
              "logged outputs matching the failure, per version (share with 95% Wilson interval)"),
        Table(stage.table("scope_interactions"), "the incident's interactions per role"),
        _figure("timeline", lambda: timeline_figure(timeline),
                "timeline: logged events and guardrail decisions per version"),
        _figure("scope", lambda: scope_figure(by_day), "share of traffic matching, per day"))


@register_section("containment", "Containment options", 40)
def _containment(inputs: ReportInputs):
    stage = inputs.stage("triage")
    if stage is None:
        return _missing("triage")
    from llmrca.viz import containment_figure

    options = stage.table("containment")
    shown = options.drop(columns=[c for c in ("note",) if c in options.columns])
    notes = tuple(f"{o}: {n}" for o, n in zip(options.get("option", []), options.get("note", []))
                  if n)
    return _blocks(
        Text("Each option's measured effect: the failure left on the offending set (after) and "
             "its cost on the context set (context_rate: false positives for a rule, refusals "
             "for a rollback)."),
        Table(shown, "containment options"),
        _figure("containment", lambda: containment_figure(options),
                "failure left against context cost per option"),
        Bullets(notes) if notes else None)


@register_section("reproduction", "Reproduction", 50)
def _reproduction(inputs: ReportInputs):
    stage = inputs.stage("reproduction")
    if stage is None:
        return _missing("reproduction")
    from llmrca.viz import rates_figure

    rates = stage.table("version_rates")
    data = stage.data
    return _blocks(
        Text(f"Replayed {data.get('samples')} samples per offending interaction and version "
             f"(seed {data.get('seed')}, judges {', '.join(data.get('judges') or [])}). "
             + _reproduction_reading(stage)),
        Table(_rate_columns(rates), "reproduction rate per version and variant"),
        _figure("rates", lambda: rates_figure(rates), "reproduction rate per version"),
        Table(stage.table("comparisons"), "between versions (Fisher's exact, Holm-adjusted)"),
        Table(stage.table("perturbations"), "perturbations against the original (McNemar)"))


@register_section("investigation", "Investigation", 60)
def _investigation(inputs: ReportInputs):
    stage = inputs.stage("comparison")
    blocks: list[Block | None] = []
    if stage is None:
        blocks += list(_missing("comparison"))
    else:
        from llmrca.viz import logprob_figure

        table = stage.table("table")
        blocks += [
            Text("Evidence so far: how likely each version finds the logged offending output "
                 "(teacher-forced log-probability), and where versions first part ways on it."),
            Table(stage.table("logprob_summary"),
                  "mean log-probability of the offending outputs per version"),
            _figure("logprob", lambda: logprob_figure(table),
                    "log-probability of the offending output per version"),
            Table(stage.table("divergence"), "first divergence on the offending output")]
    blocks.append(Text("Hypotheses and root cause: hypothesis tests are not examined in this "
                       "run; attribution and model internals follow when stored."))
    return _blocks(*blocks)


def _attribution_pair(store, incident_id: str) -> tuple[Any, Any] | None:
    """The newest stored segment-attribution run of the incident (preferring one with a
    faithfulness check: the failing side of ``compare_attributions``) and the newest run with
    the same method, baseline and target on another version (None when there is none)."""
    from llmrca.attribution import load_attribution
    from llmrca.store.attributions import list_attribution_runs

    runs = list_attribution_runs(store, incident_id)
    results = [load_attribution(store, str(r)) for r in runs["run_id"]]
    results = [r for r in results if r.method != "ig"]
    if not results:
        return None
    failing = next((r for r in results if r.faithfulness is not None), results[0])
    key = (failing.method, failing.baseline, failing.target)
    safe = next((r for r in results if (r.method, r.baseline, r.target) == key
                 and r.model_version != failing.model_version), None)
    return safe, failing


@register_section("attribution", "Investigation: attribution", 62)
def _attribution(inputs: ReportInputs):
    """Stored attribution runs of this incident (``llmrca attribute`` / the attribution
    notebook): the prime suspect segment of the version diff and the faithfulness verdict;
    left out when there are none."""
    if inputs.store is None:
        return None
    pair = _attribution_pair(inputs.store, inputs.incident_id)
    if pair is None:
        return None
    safe, failing = pair
    from llmrca.attribution import attribution_diff
    from llmrca.viz import segment_bars_figure

    how = (f"{failing.method} attribution over prompt segments ({failing.baseline} baseline, "
           f"target {failing.target})")
    blocks: list[Block | None] = []
    if safe is not None:
        diff = attribution_diff(safe, failing)
        top = diff.iloc[0] if not diff.empty else None
        if top is not None:
            blocks.append(Text(
                f"Prime suspect: segment {top['segment']} ({str(top['text']).strip()!r}). By "
                f"{how}, its attribution toward the offending output rises from "
                f"{float(top[safe.model_version]):+.3f} on {safe.model_version} to "
                f"{float(top[failing.model_version]):+.3f} on {failing.model_version} "
                f"(mean over {int(top['interactions'])} interactions), the largest increase "
                f"of any segment."))
        blocks.append(Table(diff.drop(columns=["abs_change"]).round(3),
                            "segment attribution per version, largest increase first"))
        blocks.append(_figure("attribution", lambda: segment_bars_figure(safe, failing),
                              "mean attribution per segment and version"))
    else:
        summary = failing.summary()
        blocks.append(Text(f"Attributed on {failing.model_version} only ({how}); no run on "
                           f"another version to compare with."))
        blocks.append(Table(summary.round(3), "segment attribution over interactions"))
    faith = failing.faithfulness
    if faith is None:
        blocks.append(Text("Faithfulness was not checked (attribution run without replay "
                           "samples)."))
    else:
        per = faith.per_prompt
        blocks.append(Text(
            f"Faithfulness on {failing.model_version}: {faith.verdict}. Per prompt, deleting "
            f"the top segment lowers the failure rate by "
            f"{float(per['top_drop'].mean()) if len(per) else float('nan'):.2f} on average, "
            f"deleting random spans of similar length by "
            f"{float(per['random_drop'].mean()) if len(per) else float('nan'):.2f}; paired "
            f"difference {faith.difference:+.2f} [{faith.difference_low:+.2f}, "
            f"{faith.difference_high:+.2f}], exact sign-flip p = {faith.p_value:.3g} over "
            f"{len(per)} prompts ({faith.samples} samples per variant, seed {faith.seed}). "
            f"Rule: faithful when the mean difference is > 0 and p < 0.05, weak when > 0 only, "
            f"unfaithful otherwise."))
        if len(per):
            blocks.append(Table(per.round(3), "faithfulness per prompt"))
    return _blocks(*blocks)


@register_section("internals", "Investigation: model internals", 65)
def _internals(inputs: ReportInputs):
    """Stored patching and weight-diff results of this incident (``llmrca patch`` / the internals
    notebook); left out when there are none."""
    if inputs.store is None:
        return None
    from llmrca.internals import load_result
    from llmrca.store.internals import list_results

    stored = list_results(inputs.store, "patching", inputs.incident_id)
    if stored.empty:
        return None
    # The newest result of each setting (positions, span): the last prompt token alone and all
    # positions answer different questions, so both are shown when both are stored.
    settings: dict[tuple[str, str], Any] = {}
    for result_id in stored["result_id"]:
        result = load_result(inputs.store, str(result_id))
        parameters = result.info.get("parameters", {})
        settings.setdefault((str(parameters.get("positions", "?")),
                             str(parameters.get("span", "?"))), result)
    lines, columns = [], {}
    for (positions, span), patching in settings.items():
        frame = patching.to_frame()
        best = frame.loc[frame["share"].idxmax()]
        versions = patching.info.get("versions", ["?", "?"])
        lines.append(f"Patching {versions[0]}'s residual stream into {versions[1]} at "
                     f"positions '{positions}' (gap over the "
                     f"{ {'output': 'whole output', 'first': 'first differing token'}.get(span, span)}"
                     f") restores up to "
                     f"{_pct(best['share'])} of the contrastive gap (log p(offending output) - "
                     f"log p({versions[0]}'s answer)), at hidden state {int(best['state'])}.")
        columns[f"share ({positions}, {span})"] = frame.set_index("state")["share"]
    table = pd.DataFrame(columns).reset_index()
    newest = next(iter(settings.values())).to_frame()
    from llmrca.viz import patching_figure

    return _blocks(Bullets(tuple(lines)),
                   Table(table.round(3), "share of the gap restored per hidden state and "
                                         "setting"),
                   _figure("patching", lambda: patching_figure(newest),
                           "activation patching per hidden state (newest setting)"))


def latest_hypotheses(store, incident_id: str):
    """The incident's stored hypothesis run that tested the most hypotheses, the newest of
    those (a full investigation over a partial one); None when there is none."""
    from llmrca.hypotheses import load_hypotheses
    from llmrca.store.hypotheses import list_hypothesis_runs

    runs = list_hypothesis_runs(store, incident_id)
    if runs.empty:
        return None
    runs = runs.sort_values(["hypotheses", "created_at"], ascending=False, kind="stable")
    return load_hypotheses(store, str(runs["run_id"].iloc[0]))


@register_section("root_cause", "Root cause", 67)
def _root_cause(inputs: ReportInputs):
    """The newest hypothesis run (``llmrca investigate`` / the hypotheses notebook): the
    proposed root cause, the contributing factors and the evidence behind every verdict; left
    out when there is none."""
    if inputs.store is None:
        return None
    report = latest_hypotheses(inputs.store, inputs.incident_id)
    if report is None:
        return None
    frame = report.to_frame().drop(columns=["summary"])
    for column in ("effect", "effect_low", "effect_high"):
        frame[column] = frame[column].astype(float).round(3)
    # p-values in two significant digits (rounding to places would print 1.6e-06 as 0).
    for column in ("p_value", "adjusted_p"):
        frame[column] = [("" if pd.isna(p) else f"{float(p):.2g}")
                         for p in frame[column].astype(float)]
    evidence = []
    for r in report.results:
        ids = {k: v for k, v in r.evidence.items() if k.endswith(("_run", "_runs"))}
        evidence.append(f"{r.name} -- {r.verdict}: {r.summary}. Method: {r.method or 'n/a'}. "
                        f"Runs: {ids or 'none'}.")
    rule = (f"Rule: supported when the Holm-adjusted one-sided p-value is below {report.alpha} "
            f"and the effect is at least the hypothesis's minimum effect; refuted when the "
            f"interval's upper bound is below that minimum; inconclusive otherwise (and when not "
            f"applicable). The prompt is the unit of every test.")
    contributing = [f"{r.name}: {r.summary} (effect {r.effect:+.2f}, Holm p "
                    f"{r.adjusted_p:.2g})" for r in report.contributing]
    return _blocks(Text(report.conclusion()),
                   Bullets(tuple(contributing)) if contributing else None,
                   Table(frame, f"hypotheses of run {report.run_id}, supported first by "
                                f"effect"),
                   Text(rule), Bullets(tuple(evidence)))


@register_section("remediation", "Remediation and its verification", 70)
def _remediation(inputs: ReportInputs):
    try:
        from llmrca.verify import latest_verifications  # type: ignore[import-not-found]
    except ImportError:
        return (Text("Fix verification is not available in this installation yet "
                     "(llmrca.verify); no verification results are shown."),)
    if inputs.store is None:
        return (Text("No store was open: verification results cannot be read."),)
    results = latest_verifications(inputs.store, inputs.incident_id)
    frame = results if isinstance(results, pd.DataFrame) else pd.DataFrame(results)
    if frame.empty:
        return (Text("No fix has been verified for this incident yet."),)
    return (Table(frame, "latest verification results"),)


@register_section("impact", "Impact", 80)
def _impact(inputs: ReportInputs):
    stage = inputs.stage("triage")
    if stage is None:
        return _missing("triage")
    by_day = stage.table("scope_by_day")
    days = by_day[by_day["matching"] > 0] if len(by_day) else by_day
    totals = stage.data.get("scope_totals", {})
    return (Bullets((
        (f"{totals.get('matching', 0)} logged outputs matched the failure, in "
         f"{totals.get('matching_sessions', 0)} sessions of {totals.get('matching_users', 0)} "
         f"users, on {len(days)} days."),
        (f"Offending interactions in the incident: {totals.get('offending', 0)}; context "
         f"interactions: {totals.get('context', 0)}."))),)


@register_section("lessons", "Lessons", 90)
def _lessons(inputs: ReportInputs):
    items = []
    triage = inputs.stage("triage")
    if triage:
        c = triage.data.get("classification", {})
        if c.get("severity") != c.get("recorded_severity"):
            items.append(f"The recorded severity ({c.get('recorded_severity')}) differs from "
                         f"the rule-based proposal ({c.get('severity')}): review the rule or "
                         f"the record.")
        options = triage.table("containment")
        if len(options):
            good = options[(options["failure_after"].astype(float) == 0)
                           & (options["context_rate"].astype(float).fillna(1) < 0.05)]
            if len(good):
                items.append("A containment existed that stops every offending case at under "
                             "5% context cost: " + ", ".join(map(str, good["option"])) + ".")
    reproduction = inputs.stage("reproduction")
    if reproduction and reproduction.data.get("reproduces_on"):
        items.append("The failure reproduces offline: add its offending interactions to the "
                     "release regression set.")
    items.append("To be completed by the team: what would have caught this before release.")
    return (Bullets(tuple(items)),)


@register_section("appendix", "Appendix: provenance", 100)
def _appendix(inputs: ReportInputs):
    prov = inputs.provenance
    models = pd.DataFrame(prov.get("models", []), columns=["model_version", "fingerprint"])
    packages = pd.DataFrame(sorted(prov.get("packages", {}).items()),
                            columns=["package", "version"])
    runs = pd.DataFrame(prov.get("runs", []), columns=["notebook", "replay_run_id"])
    return (Table(models, "model fingerprints"), Table(packages, "package versions"),
            Bullets((f"Seed {prov.get('seed')}; samples {prov.get('samples')}.",
                     (f"Workbench run {prov.get('run_id') or '(by hand)'}; notebooks: "
                      f"{', '.join(prov.get('notebooks', []))}."))),
            Table(runs, "replay runs (store run ids)"))
