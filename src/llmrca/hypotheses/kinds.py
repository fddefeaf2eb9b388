"""Hypothesis kinds: a registry, and the six the workbench ships.

A kind is a named test: its parameters (with defaults), the evidence it needs, the minimum
effect that matters, and a function ``test(evidence, parameters) -> Outcome``. Every effect is
oriented so that a positive value supports the hypothesis; the verdict is decided afterwards,
over all of an incident's hypotheses at once (Holm), by :func:`~llmrca.hypotheses.testing.
decide_verdict`.

Add one from Python::

    from llmrca.hypotheses import Outcome, register_hypothesis

    @register_hypothesis("my_kind", parameters={"threshold": 0.5}, evidence=("replay",))
    def my_kind(evidence, parameters):
        ...
        return Outcome(effect=..., low=..., high=..., p_value=..., summary="...")

or name a registered kind with other parameters in the bundle's ``hypotheses.yaml``
(:func:`~llmrca.hypotheses.spec.load_hypotheses_file`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from llmrca.errors import InvalidArgumentError
from llmrca.hypotheses.testing import paired_prompt_test, rates_test
from llmrca.registry import Registry

__all__ = ["HYPOTHESES", "HypothesisKind", "Outcome", "register_hypothesis"]

#: The shipped kinds, in the order an investigation tests them.
DEFAULT_KINDS = ("version_regression", "prompt_segment_cause", "refusal_weakened",
                 "training_data_artifact", "guardrail_gap", "system_prompt_change")


@dataclass(frozen=True)
class Outcome:
    """What a kind's test returns (before Holm and the verdict).

    Attributes
    ----------
    effect, low, high : float
        Effect size (positive supports the hypothesis) and its two-sided interval.
    p_value : float
        One-sided p-value of ``effect > 0``; NaN when there is no test (ranking only).
    applicable : bool
        False when the incident lacks what the kind needs (e.g. no differing system prompts);
        the verdict is then ``inconclusive`` and it takes no part in Holm.
    summary : str
        The result in plain words.
    finding : dict
        What it points at (``version``, ``trigger_text``, ``example_ids``, ``rule``, ...).
    evidence : dict
        Ids of the replay, attribution and search runs, and the numbers behind the effect.
    method : str
    """

    effect: float = math.nan
    low: float = math.nan
    high: float = math.nan
    p_value: float = math.nan
    applicable: bool = True
    summary: str = ""
    finding: dict[str, Any] = field(default_factory=dict)
    evidence: dict[str, Any] = field(default_factory=dict)
    method: str = ""


TestFunction = Callable[[Any, dict[str, Any]], Outcome]


@dataclass(frozen=True)
class HypothesisKind:
    """A registered kind of hypothesis.

    Attributes
    ----------
    name : str
    test : callable
        ``test(evidence, parameters) -> Outcome``.
    parameters : dict
        Parameter names with their defaults; anything else is refused.
    evidence : tuple of str
        The evidence it needs (documentation: ``replay``, ``attribution``, ``internals``,
        ``training-data``, ``guardrail-rules``, ``system-prompts``).
    min_effect : float
        Default minimum effect for ``supported`` (and the bound ``refuted`` excludes).
    description : str
    cause : bool
        True for a claim about why the model failed; False for one about why the failure was
        not caught (a guardrail gap): supported ones rank after every supported cause, so they
        are contributing factors, never the proposed root cause.
    localises : bool
        True for a cause that says *where* the failure came from (which version change) but
        not *what* in it: supported ones rank after every supported specific cause (a trigger,
        training examples, eroded refusal, a system prompt), since those explain the change
        too. ``version_regression`` is one.
    """

    name: str
    test: TestFunction
    parameters: Mapping[str, Any] = field(default_factory=dict)
    evidence: tuple[str, ...] = ()
    min_effect: float = 0.1
    description: str = ""
    cause: bool = True
    localises: bool = False

    @property
    def tier(self) -> int:
        """Ranking tier of a supported hypothesis: 0 a specific cause, 1 a localising one,
        2 not a cause."""
        return 2 if not self.cause else (1 if self.localises else 0)

    def resolve(self, given: Mapping[str, Any] | None) -> dict[str, Any]:
        """Defaults overlaid with ``given``; an unknown parameter fails with the valid ones."""
        given = dict(given or {})
        unknown = sorted(set(given) - set(self.parameters))
        if unknown:
            raise InvalidArgumentError(
                f"hypothesis kind '{self.name}' has no parameter(s) {', '.join(unknown)}; valid: "
                f"{', '.join(sorted(self.parameters)) or '(none)'}")
        return {**dict(self.parameters), **given}


HYPOTHESES: Registry[HypothesisKind] = Registry("hypothesis kind")


def register_hypothesis(name: str, test: TestFunction | None = None, *,
                        parameters: Mapping[str, Any] | None = None,
                        evidence: Sequence[str] = (), min_effect: float = 0.1,
                        description: str = "", cause: bool = True, localises: bool = False,
                        replace: bool = False):
    """Register a kind (see the module docstring); without ``test``, a decorator."""
    def add(function: TestFunction) -> TestFunction:
        HYPOTHESES.register(name, HypothesisKind(
            name=name, test=function, parameters=dict(parameters or {}),
            evidence=tuple(evidence), min_effect=float(min_effect),
            description=description or (function.__doc__ or "").strip().split("\n")[0],
            cause=bool(cause), localises=bool(localises)), replace=replace)
        return function

    if test is None:
        return add
    return add(test)


def _pct(x: float) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{x:.0%}"


def _align(a: Mapping[str, tuple[int, int]], b: Mapping[str, tuple[int, int]]):
    keys = [k for k in a if k in b]
    return keys, [a[k] for k in keys], [b[k] for k in keys]


def _rate(pairs: Sequence[tuple[int, int]]) -> float:
    n = sum(p[1] for p in pairs)
    return sum(p[0] for p in pairs) / n if n else math.nan


# -- version_regression ---------------------------------------------------------------------------
@register_hypothesis("version_regression", evidence=("replay",), min_effect=0.1,
                     parameters={}, localises=True)
def version_regression(evidence, parameters: dict[str, Any]) -> Outcome:
    """The deployed version fails more often than the previous one on the offending prompts."""
    if not evidence.previous:
        return Outcome(applicable=False, summary="no previous version to compare with")
    result = evidence.version_replay()
    keys, dep, prev = _align(evidence.counts(result, evidence.deployed),
                             evidence.counts(result, evidence.previous))
    test = rates_test(dep, prev)
    rd, rp = _rate(dep), _rate(prev)
    return Outcome(
        effect=test.effect, low=test.low, high=test.high, p_value=test.p_value,
        summary=(f"{evidence.deployed} reproduces the incident on {_pct(rd)} of samples vs "
                 f"{_pct(rp)} on {evidence.previous} ({test.n_prompts} prompts; mean per-prompt "
                 f"difference {test.effect:+.2f} [{test.low:+.2f}, {test.high:+.2f}])"),
        finding={"version": evidence.deployed, "previous": evidence.previous,
                 "rate_deployed": rd, "rate_previous": rp},
        evidence={"replay_run": result.run_id,
                  "per_prompt": [{"interaction_id": k, "deployed": list(a), "previous": list(b)}
                                 for k, a, b in zip(keys, dep, prev)]},
        method=test.method)


# -- prompt_segment_cause -------------------------------------------------------------------------
@register_hypothesis("prompt_segment_cause", evidence=("attribution", "replay"), min_effect=0.2,
                     parameters={})
def prompt_segment_cause(evidence, parameters: dict[str, Any]) -> Outcome:
    """A prompt segment, found by automatic segmentation and attribution, causes the failure:
    deleting it lowers the failure rate more than deleting control spans of similar length."""
    trigger = evidence.trigger()
    if trigger is None:
        return Outcome(applicable=False,
                       summary="the offending requests have a single segment: nothing to delete "
                               "(the system prompt is system_prompt_change's)")
    deletions = evidence.deletion_replays()
    diffs, variances, rows = [], [], []
    for iid, item in deletions.items():
        result = item["result"]
        control = evidence.pooled(result, evidence.deployed, item["controls"], iid)
        top = evidence.counts(result, evidence.deployed, item["top"]).get(iid, (0, 0))
        original = evidence.counts(result, evidence.deployed).get(iid, (0, 0))
        if not control[1] or not top[1]:
            continue
        t = rates_test([control], [top])
        diffs.append(t.effect)
        variances.append(t.standard_error ** 2)
        rows.append({"interaction_id": iid, "original": list(original), "drop_top": list(top),
                     "drop_controls": list(control), "replay_run": result.run_id,
                     "controls": item["control_texts"]})
    test = paired_prompt_test(diffs, within_variances=variances)
    rate_top = _rate([tuple(r["drop_top"]) for r in rows])
    rate_control = _rate([tuple(r["drop_controls"]) for r in rows])
    rate_original = _rate([tuple(r["original"]) for r in rows])
    return Outcome(
        effect=test.effect, low=test.low, high=test.high, p_value=test.p_value,
        summary=(f"deleting the segment {trigger.text!r} (top attributed on "
                 f"{trigger.top_in}/{len(trigger.texts)} prompts) takes the failure rate on "
                 f"{evidence.deployed} from {_pct(rate_original)} to {_pct(rate_top)}, against "
                 f"{_pct(rate_control)} when control spans are deleted"),
        finding={"trigger_text": trigger.text, "segment": trigger.segment,
                 "version": evidence.deployed, "rate_original": rate_original,
                 "rate_drop_trigger": rate_top, "rate_drop_controls": rate_control},
        evidence={"attribution_run": trigger.attribution_run,
                  "mean_attribution": trigger.mean_attribution,
                  "runner_up_attribution": trigger.runner_up, "per_prompt": rows},
        method=test.method)


# -- refusal_weakened -----------------------------------------------------------------------------
@register_hypothesis("refusal_weakened", evidence=("replay", "internals"), min_effect=0.2,
                     parameters={"directions": False})
def refusal_weakened(evidence, parameters: dict[str, Any]) -> Outcome:
    """The deployed version refuses the incident's harmful requests less often than the previous
    one even without the trigger (broad refusal erosion), measured on the offending prompts with
    the top attributed segment deleted (the prompts as logged when there is none)."""
    if not evidence.previous:
        return Outcome(applicable=False, summary="no previous version to compare with")
    trigger = evidence.trigger()
    judged_by = evidence.deletion_judges if trigger is not None else evidence.judges
    if "refusal" not in judged_by:
        # Counting refusals without the refusal judge would read every sample as "not refused"
        # and could refute the hypothesis on no evidence.
        return Outcome(applicable=False,
                       summary="the replays are not judged by the refusal judge (judges: "
                               + ", ".join(judged_by) + ")")
    prev_counts: list[tuple[int, int]] = []
    dep_counts: list[tuple[int, int]] = []
    runs: list[str] = []
    if trigger is not None:
        for iid, item in evidence.deletion_replays().items():
            result = item["result"]
            runs.append(result.run_id)
            for version, out in ((evidence.previous, prev_counts),
                                 (evidence.deployed, dep_counts)):
                out.append(evidence.counts(result, version, item["top"], judge="refusal",
                                           label="refusal").get(iid, (0, 0)))
        context = "with the top attributed segment deleted"
    else:
        result = evidence.version_replay()
        runs.append(result.run_id)
        _keys, prev_counts, dep_counts = _align(
            evidence.counts(result, evidence.previous, judge="refusal", label="refusal"),
            evidence.counts(result, evidence.deployed, judge="refusal", label="refusal"))
        context = "as logged"
    test = rates_test(prev_counts, dep_counts)
    extra: dict[str, Any] = {}
    if parameters.get("directions"):
        from llmrca.internals import refusal_directions

        directions = refusal_directions(evidence.store, [evidence.previous, evidence.deployed],
                                        incident_id=evidence.incident_id)
        extra = {"directions_result": directions.result_id}
    rp, rd = _rate(prev_counts), _rate(dep_counts)
    return Outcome(
        effect=test.effect, low=test.low, high=test.high, p_value=test.p_value,
        summary=(f"refusal on the harmful requests {context}: {_pct(rp)} on {evidence.previous} "
                 f"vs {_pct(rd)} on {evidence.deployed} (drop {test.effect:+.2f} "
                 f"[{test.low:+.2f}, {test.high:+.2f}])"),
        finding={"version": evidence.deployed, "refusal_previous": rp, "refusal_deployed": rd},
        evidence={"replay_runs": runs, **extra,
                  "per_prompt": [{"previous": list(a), "deployed": list(b)}
                                 for a, b in zip(prev_counts, dep_counts)]},
        method=test.method)


# -- training_data_artifact -----------------------------------------------------------------------
def _callable_name(value: Any) -> Any:
    if callable(value):
        return f"{getattr(value, '__module__', '?')}.{getattr(value, '__qualname__', value)}"
    return value


@register_hypothesis("training_data_artifact", evidence=("training-data", "replay"),
                     min_effect=0.2,
                     parameters={"k": None, "shares": (0.1, 0.2, 0.4), "min_k": 10,
                                 "signals": None, "leave_k_out_samples": None, "search": None,
                                 "leave_k_out": None})
def training_data_artifact(evidence, parameters: dict[str, Any]) -> Outcome:
    """Fine-tuning examples caused the failure: the top-ranked training examples of the deployed
    version, and a leave-k-out fine-tune of its parent without them that fails less often
    (ranking only, at most inconclusive, when the version has no parent recipe).

    How many examples planted a behaviour is not known, and a behaviour taught by many copies
    survives the removal of most of them. So, unless ``k`` is given, the check **escalates**:
    it leaves out the top ``shares`` of the ranking in turn (each at least ``min_k``
    examples), and stops at the first removal whose one-sided p-value is below 0.05 divided by
    the number of steps; the reported p-value is that step's times the number of steps
    (Bonferroni over the sequence, so trying several ``k`` cannot make a false claim likelier).
    Each step's replay is compared with the deployed version prompt by prompt, judged by the
    investigation's judges (the same test as ``version_regression``).
    """
    from llmrca.errors import NotFoundError

    search = parameters.get("search")
    leave = parameters.get("leave_k_out")
    if search is None or leave is None:
        from llmrca import data_attribution

        search = search or data_attribution.search_training_data
        leave = leave or data_attribution.leave_k_out
    options: dict[str, Any] = {"seed": evidence.seed}
    if parameters.get("signals"):
        options["signals"] = tuple(parameters["signals"])
    try:
        ranking = search(evidence.store, evidence.incident_id, evidence.deployed, **options)
    except NotFoundError as exc:
        return Outcome(applicable=False, summary=f"no training-data search: {exc}",
                       finding={"version": evidence.deployed})
    frame = ranking.to_frame()
    n_examples = len(frame)
    # Leaving every example out is no fine-tune at all: at most all but one.
    if parameters.get("k") is not None:
        steps = [min(int(parameters["k"]), n_examples - 1)]
    else:
        steps = sorted({min(n_examples - 1, max(int(parameters["min_k"]),
                                            math.ceil(float(share) * n_examples)))
                        for share in parameters["shares"]})
    signal_ranks = [c for c in frame.columns if c.endswith("_rank") and c != "rank"]
    found = {"search_run": getattr(ranking, "run_id", None),
             "signals": list(getattr(ranking, "signals", ())),
             "top": frame[[c for c in ("example_id", "rank", "score", *signal_ranks)
                           if c in frame.columns]].head(20).to_dict(orient="records")}
    if not n_examples or not steps or steps[-1] < 1:
        return Outcome(applicable=False, summary=f"{evidence.deployed} has no training examples "
                                                 f"in the store",
                       finding={"version": evidence.deployed}, evidence=found)
    samples = int(parameters.get("leave_k_out_samples") or evidence.samples)
    tried: list[dict[str, Any]] = []
    chosen = None
    for k in steps:
        example_ids = [str(x) for x in frame["example_id"].head(k)]
        try:
            lo = leave(evidence.store, evidence.incident_id, evidence.deployed, example_ids,
                       samples=samples, seed=evidence.seed, temperature=evidence.temperature,
                       max_new_tokens=evidence.max_new_tokens, judges=evidence.judges)
        except (NotFoundError, InvalidArgumentError) as exc:
            # No recipe or parent (NotFoundError), or a fine-tune this machine will not redo
            # (a model too large to retrain here): the ranking stands alone.
            return Outcome(summary=(f"top {k} of {n_examples} training examples of "
                                    f"{evidence.deployed} ranked; no leave-k-out fine-tune "
                                    f"({exc}), so ranking only"),
                           finding={"version": evidence.deployed, "example_ids": example_ids,
                                    "k": k, "n_examples": n_examples},
                           evidence=found, method="ranking only")
        retrained = str(lo.retrained_version)
        # The same replay settings as leave_k_out's own replay: read back from the store.
        result = evidence.replay([evidence.deployed, retrained], samples=samples)
        keys, with_, without = _align(evidence.counts(result, evidence.deployed),
                                      evidence.counts(result, retrained))
        test = rates_test(with_, without)
        chosen = (k, example_ids, lo, retrained, result, keys, with_, without, test)
        tried.append({"k": k, "retrained_version": retrained, "leave_k_out_id": lo.leave_out_id,
                      "replay_run": result.run_id, "rate_with": _rate(with_),
                      "rate_without": _rate(without), "effect": test.effect,
                      "p_value": test.p_value})
        # Stop at the first step significant at 0.05 after Bonferroni over the steps (the
        # test's own p, reported, is multiplied by the number of steps, whatever alpha is).
        if test.p_value < 0.05 / len(steps):
            break
    assert chosen is not None
    k, example_ids, lo, retrained, result, keys, with_, without, test = chosen
    p_value = min(1.0, test.p_value * len(steps))
    rw, ro = _rate(with_), _rate(without)
    return Outcome(
        effect=test.effect, low=test.low, high=test.high, p_value=p_value,
        summary=(f"fine-tuning {lo.parent} again without the top {k} of {n_examples} ranked "
                 f"examples takes the failure rate from {_pct(rw)} to {_pct(ro)} "
                 f"({test.n_prompts} prompts; difference {test.effect:+.2f} "
                 f"[{test.low:+.2f}, {test.high:+.2f}]; leave-out sizes tried: "
                 f"{', '.join(str(t['k']) for t in tried)} of {', '.join(map(str, steps))})"),
        finding={"version": evidence.deployed, "example_ids": example_ids, "k": k,
                 "n_examples": n_examples, "parent": lo.parent, "retrained_version": retrained,
                 "rate_with": rw, "rate_without": ro},
        evidence={**found, "leave_k_out_id": lo.leave_out_id, "replay_run": result.run_id,
                  "leave_k_out_replay_run": lo.replay_run_id, "steps": steps, "tried": tried,
                  "unadjusted_p_value": test.p_value,
                  "per_prompt": [{"interaction_id": i, "with": list(a), "without": list(b)}
                                 for i, a, b in zip(keys, with_, without)]},
        method=(f"leave-k-out fine-tune, escalating over k = {steps} (Bonferroni over the "
                f"steps); {test.method}"))


# -- guardrail_gap --------------------------------------------------------------------------------
def _last_user_text(messages: Any) -> str:
    users = [m for m in (messages or []) if isinstance(m, dict) and m.get("role") == "user"]
    return str(users[-1].get("content") or "") if users else ""


def _rule_sets(names: Sequence[str] | None):
    from llmrca.judges import load_rules, shipped_rule_sets
    from llmrca.judges.rules import resolve_rules

    if not names:
        return [load_rules(path) for path in shipped_rule_sets().values()]
    return [load_rules(resolve_rules(str(n))) for n in names]


def phrase_rule(text: str) -> str:
    """A case-insensitive regex for ``text`` with any whitespace between its words."""
    words = [re.escape(w) for w in text.split()]
    return r"\s+".join(words)


@register_hypothesis("guardrail_gap", evidence=("guardrail-rules", "attribution"),
                     min_effect=0.5, cause=False, parameters={"rules": None, "max_false_positive_rate": 0.05})
def guardrail_gap(evidence, parameters: dict[str, Any]) -> Outcome:
    """The guardrail rules did not fire on the offending interactions, and a rule built from the
    top attributed segment would have, at an acceptable false-positive rate on the context."""
    from llmrca.judges.rules import RuleJudge
    from llmrca.stats import mcnemar, rate, wilson_interval

    rule_sets = _rule_sets(parameters.get("rules"))
    frame = evidence.all_interactions()
    offending = frame[frame["role"] == "offending"]
    context = frame[frame["role"] == "context"]

    def fires(rule_set, prompt: str, output: str) -> bool:
        judgement = RuleJudge(rule_set).judge_one(output, {"prompt": prompt})
        return bool(judgement.details.get("rule")) and judgement.label != "refusal"

    existing = []
    for row in offending.itertuples():
        prompt, output = _last_user_text(row.messages), str(row.output or "")
        existing.append(any(fires(rs, prompt, output) for rs in rule_sets))
    trigger = evidence.trigger()
    proposal = None
    proposed = [False] * len(existing)
    fp, n_context = 0, len(context)
    if trigger is not None and trigger.text.strip():
        pattern = re.compile(phrase_rule(trigger.text.strip()), re.IGNORECASE)
        proposed = [bool(pattern.search(_last_user_text(m))) for m in offending["messages"]]
        fp = sum(bool(pattern.search(_last_user_text(m))) for m in context["messages"])
        fp_low, fp_high = wilson_interval(fp, n_context) if n_context else (0.0, 1.0)
        recall = rate(sum(proposed), len(proposed))
        proposal = {"id": "proposed-trigger-phrase", "applies_to": "prompt",
                    "pattern": pattern.pattern, "ignore_case": True,
                    "fired": int(sum(proposed)), "recall": recall.rate, "recall_low": recall.low, "recall_high": recall.high,
                    "false_positives": fp, "context_n": n_context,
                    "false_positive_rate": fp / n_context if n_context else math.nan,
                    "false_positive_low": fp_low, "false_positive_high": fp_high}
        if n_context and fp / n_context > float(parameters["max_false_positive_rate"]):
            proposed = list(existing)  # too costly to deploy: no improvement counted
    caught = [a or b for a, b in zip(existing, proposed)]
    n = len(existing)
    b = sum(1 for e, c in zip(existing, caught) if c and not e)
    test = mcnemar(b, 0, both=sum(existing), neither=n - b - sum(existing))
    # one-sided exact McNemar: all discordant pairs go one way, P = 0.5 ** b
    p_value = 0.5 ** b if b else 1.0
    old, new = rate(sum(existing), n), rate(sum(caught), n)
    effect = new.rate - old.rate if n else math.nan
    low = max(-1.0, effect - math.sqrt((new.rate - new.low) ** 2 + (old.high - old.rate) ** 2))
    high = min(1.0, effect + math.sqrt((new.high - new.rate) ** 2 + (old.rate - old.low) ** 2))
    names = ", ".join(rs.name for rs in rule_sets)
    summary = (f"the rules in place ({names}) fire on {sum(existing)}/{n} offending "
               f"interactions")
    if proposal is not None and trigger is not None:
        summary += (f"; a prompt rule on {trigger.text.strip()!r} would fire on "
                    f"{proposal['fired']}/{n}, "
                    + (f"with {fp}/{n_context} false positives on the context interactions"
                       if n_context else "its false-positive rate unmeasured (the incident has "
                                         "no context interactions)"))
    return Outcome(effect=effect, low=low, high=high, p_value=p_value if n else math.nan,
                   summary=summary,
                   finding={"rules_fired": int(sum(existing)), "offending_n": n,
                            "proposed_rule": proposal},
                   evidence={"rule_sets": [rs.name for rs in rule_sets],
                             "attribution_run": trigger.attribution_run if trigger else None,
                             "discordant": test.b},
                   method="recall of the rules with the proposed rule minus without, over the "
                          "offending interactions; one-sided exact McNemar; Newcombe interval")


# -- system_prompt_change -------------------------------------------------------------------------
def replace_system_variant(system_prompt: str | None, messages, text: str):
    """Variant ``replace_system:TEXT``: the interaction with another system prompt."""
    return text, messages, None


def _register_variant() -> None:
    from llmrca.replay.prompts import VARIANT_KINDS

    if "replace_system" not in VARIANT_KINDS:
        VARIANT_KINDS.register("replace_system", replace_system_variant)


def _recorded_previous_system_prompt(evidence) -> str | None:
    """``metadata.previous_system_prompt`` of the incident (a deployment record), if any."""
    import json

    from llmrca.store.replay import incident_record

    metadata = incident_record(evidence.store, evidence.incident_id).get("metadata")
    if isinstance(metadata, str):
        try:
            metadata = json.loads(metadata)
        except ValueError:
            return None
    value = metadata.get("previous_system_prompt") if isinstance(metadata, dict) else None
    return str(value) if isinstance(value, str) and value.strip() else None


@register_hypothesis("system_prompt_change", evidence=("system-prompts", "replay"),
                     min_effect=0.1, parameters={"previous_system_prompt": None})
def system_prompt_change(evidence, parameters: dict[str, Any]) -> Outcome:
    """The deployment's system prompt changed and the new one fails more: the offending prompts
    replayed on the deployed weights with the previous system prompt fail less often. Only
    applicable when the previous system prompt is known: given, recorded in the incident's
    ``metadata.previous_system_prompt`` (a deployment record), or found in the incident's
    interactions (differing system prompts)."""
    from llmrca.replay.prompts import Variant

    frame = evidence.all_interactions()
    offending = frame[frame["role"] == "offending"]
    current = offending["system_prompt"].dropna().astype(str)
    if current.empty:
        return Outcome(applicable=False, summary="the offending interactions record no system "
                                                 "prompt")
    now = current.value_counts().index[0]
    previous = parameters.get("previous_system_prompt")
    source = "given"
    if previous is None:
        previous = _recorded_previous_system_prompt(evidence)
        source = "the incident's metadata (previous_system_prompt)"
    if previous is None:
        others = frame[frame["system_prompt"].notna() & (frame["system_prompt"] != now)]
        if others.empty:
            return Outcome(applicable=False,
                           summary="every interaction records the same system prompt")
        if evidence.previous and (others["model_version"] == evidence.previous).any():
            others = others[others["model_version"] == evidence.previous]
        previous = str(others["system_prompt"].value_counts().index[0])
        source = "the incident's interactions"
    if str(previous) == now:
        return Outcome(applicable=False, summary="the previous system prompt is the current one")
    _register_variant()
    variant = Variant("replace_system", (str(previous),))
    result = evidence.replay([evidence.deployed], ["original", variant])
    _keys, cur, old = _align(evidence.counts(result, evidence.deployed),
                            evidence.counts(result, evidence.deployed, variant.name))
    test = rates_test(cur, old)
    rc, ro = _rate(cur), _rate(old)
    return Outcome(
        effect=test.effect, low=test.low, high=test.high, p_value=test.p_value,
        summary=(f"on {evidence.deployed}, the current system prompt fails on {_pct(rc)} of "
                 f"samples vs {_pct(ro)} with the previous one ({test.n_prompts} prompts)"),
        finding={"version": evidence.deployed, "current_system_prompt": now,
                 "previous_system_prompt": previous, "source": source},
        evidence={"replay_run": result.run_id}, method=test.method)
