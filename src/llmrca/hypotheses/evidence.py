"""The evidence an investigation gathers once and every hypothesis kind reads.

:class:`Evidence` runs each analysis the first time a kind asks for it and keeps the result:
the replay of the offending prompts on the deployed and previous versions, the attribution of
the offending outputs to automatic prompt segments on the deployed version, the incident-level
top segment (the *trigger*, found from the data: the segment with the largest mean attribution
across the offending prompts), the deletion replays that test it, and the refusal directions.
Every analysis is cached in the store by its own module, so asking again costs nothing.

Nothing here reads a model-organism spec or its ground truth: the trigger text comes out of the
attribution.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

__all__ = ["Evidence", "Trigger"]


@dataclass(frozen=True)
class Trigger:
    """The incident-level top segment of an attribution run.

    Attributes
    ----------
    segment : str
        The automatic segment's name (segments are named by position, so the same name on
        every prompt).
    text : str
        Its most common text over the offending prompts (the trigger, as found).
    texts : dict
        interaction id -> that prompt's text of the segment.
    mean_attribution, runner_up : float
        Mean attribution of the segment and of the next segment.
    top_in : int
        Prompts where it ranks first.
    attribution_run : str
    """

    segment: str
    text: str
    texts: dict[str, str]
    mean_attribution: float
    runner_up: float
    top_in: int
    attribution_run: str


class Evidence:
    """Shared, lazily computed evidence of one investigation (see the module docstring).

    Parameters
    ----------
    store : Store
    incident_id : str
    deployed, previous : str or None
        The versions compared (``previous`` None: kinds that need it are not applicable).
    samples, seed, temperature, max_new_tokens
        Replay settings of every replay the kinds run.
    judges : sequence of str, optional
        Judges of the replays that measure the failure (default: :attr:`deletion_judges`; see
        ``docs/hypotheses.md``, "Which judges").
    random_spans : int
        Control spans deleted per prompt in the segment test.
    deletion_judges : sequence of str
        Judges of the deletion replays. Default ``same-as-incident`` and ``refusal``: a deletion
        test asks whether the model still produces the offending output (the attribution's
        target), and a judge that reads the *edited* request (``compliance``) would count a
        deleted task word as the failure going away.
    """

    def __init__(self, store, incident_id: str, *, deployed: str, previous: str | None,
                 samples: int = 20, seed: int = 0, temperature: float = 1.0,
                 max_new_tokens: int = 32, judges: Sequence[str] | None = None,
                 random_spans: int = 3,
                 deletion_judges: Sequence[str] = ("same-as-incident", "refusal")):
        self.store = store
        self.incident_id = incident_id
        self.deployed = deployed
        self.previous = previous
        self.samples = int(samples)
        self.seed = int(seed)
        self.temperature = float(temperature)
        self.max_new_tokens = int(max_new_tokens)
        self.judges = list(judges) if judges is not None else list(deletion_judges)
        self.random_spans = int(random_spans)
        self.deletion_judges = list(deletion_judges)
        self._memo: dict[Any, Any] = {}

    # -- identity (no model) ---------------------------------------------------------------
    def fingerprint(self, version: str | None) -> str | None:
        """The registered fingerprint of ``version`` (from the store; no model is loaded)."""
        if version is None:
            return None
        from llmrca.store.model_versions import model_version_row

        row = model_version_row(self.store, version)
        return None if row is None else (row.get("fingerprint") or None)

    def interactions(self) -> pd.DataFrame:
        """The offending interactions (``interaction_id, system_prompt, messages, output, ...``)."""
        if "interactions" not in self._memo:
            from llmrca.store.replay import incident_interactions

            self._memo["interactions"] = incident_interactions(self.store, self.incident_id)
        return self._memo["interactions"]

    def all_interactions(self) -> pd.DataFrame:
        """Every interaction of the incident, offending and context (``role`` column)."""
        if "all" not in self._memo:
            from llmrca.store.replay import incident_interactions

            self._memo["all"] = incident_interactions(self.store, self.incident_id, role=None)
        return self._memo["all"]

    def identity(self) -> dict[str, Any]:
        """What decides every result: recorded as each hypothesis's inputs and hashed into its
        test id."""
        from llmrca.ids import content_id
        from llmrca.store.model_versions import model_version_row, training_data_digest
        from llmrca.store.replay import incident_record

        frame = self.interactions()
        everything = self.all_interactions()
        # Everything else a kind reads: the context traffic (guardrail_gap, system prompts), the
        # incident's deployment records (metadata), each version's training data and parent
        # (training_data_artifact). A change to any of them is a new test, never a stale read.
        context = content_id("interactions", *sorted(
            f"{i}:{r}:{s}" for i, r, s in zip(everything["interaction_id"], everything["role"],
                                               everything["system_prompt"])))
        record = incident_record(self.store, self.incident_id)
        data = {}
        for version in (self.deployed, self.previous):
            if version:
                row = model_version_row(self.store, version) or {}
                data[version] = {**training_data_digest(self.store, version),
                                 "parent": row.get("parent")}
        return {"incident_id": self.incident_id, "deployed": self.deployed,
                "context": context, "incident_metadata": str(record.get("metadata")),
                "training_data": data,
                "previous": self.previous,
                "fingerprints": {v: self.fingerprint(v) for v in (self.deployed, self.previous)
                                 if v},
                "samples": self.samples, "seed": self.seed, "temperature": self.temperature,
                "max_new_tokens": self.max_new_tokens, "judges": self.judges,
                "random_spans": self.random_spans, "deletion_judges": self.deletion_judges,
                "interactions": sorted(str(i) for i in frame["interaction_id"])}

    # -- replays ---------------------------------------------------------------------------
    def replay(self, versions: Sequence[str], variants: Sequence[Any] = ("original",),
               interaction_ids: Sequence[str] | None = None,
               judges: Sequence[str] | None = None, samples: int | None = None):
        """A replay (cached in the store and here) with this investigation's settings
        (``judges``, ``samples``: these instead of the investigation's)."""
        from llmrca.replay import ReplayConfig, replay_incident

        chosen = self.judges if judges is None else list(judges)
        n = self.samples if samples is None else int(samples)
        key = ("replay", tuple(versions), tuple(str(getattr(v, "name", v)) for v in variants),
               tuple(interaction_ids or ()), tuple(chosen) if chosen is not None else None, n)
        if key not in self._memo:
            config = ReplayConfig.build(samples=n, seed=self.seed,
                                        temperature=self.temperature,
                                        max_new_tokens=self.max_new_tokens,
                                        variants=list(variants), judges=chosen)
            self._memo[key] = replay_incident(self.store, self.incident_id, list(versions),
                                              config, interaction_ids=interaction_ids,
                                              progress=False)
        return self._memo[key]

    def version_replay(self):
        """The offending prompts replayed as logged on the previous and the deployed version."""
        versions = [v for v in (self.previous, self.deployed) if v]
        return self.replay(versions)

    @staticmethod
    def counts(result, version: str, variant: str = "original", *,
               judge: str | None = None, label: str | None = None) -> dict[str, tuple[int, int]]:
        """Per interaction ``(k, n)``: samples that reproduce (the combined label), or with
        ``judge``/``label`` the samples that judge labelled ``label``."""
        from llmrca.replay.measure import counted_samples

        frame = result.samples
        frame = frame[(frame["model_version"] == version) & (frame["variant"] == variant)]
        frame = counted_samples(frame, result.info.get("parameters", {}).get("decoding", {})
                                .get("temperature", 1.0) == 0)
        if judge is None:
            hits = frame["reproduces"].astype(bool)
        else:
            judged = result.judgements[result.judgements["judge"] == judge]
            positive = set(judged.loc[judged["label"] == label, "sample_id"])
            hits = frame["sample_id"].isin(positive)
        out: dict[str, tuple[int, int]] = {}
        for iid, group in hits.groupby(frame["interaction_id"], sort=False):
            out[str(iid)] = (int(group.sum()), int(group.size))
        return out

    # -- attribution and the trigger -------------------------------------------------------
    def attribution(self):
        """Segment attribution (captum feature ablation, automatic segments, removal baseline)
        of the offending outputs on the deployed version."""
        if "attribution" not in self._memo:
            from llmrca.attribution import attribute_incident

            self._memo["attribution"] = attribute_incident(
                self.store, self.incident_id, self.deployed, method="ablation",
                baseline="removal", target="output", seed=self.seed)
        return self._memo["attribution"]

    def trigger(self) -> Trigger | None:
        """The segment with the largest mean attribution over the offending prompts (None when
        no prompt has more than one segment)."""
        if "trigger" not in self._memo:
            result = self.attribution()
            frame = result.to_frame()
            # The request's segments only: the system prompt is the deployment's, not the
            # user's input, and ``system_prompt_change`` tests it against the previous one.
            if "kind" in frame.columns:
                frame = frame[frame["kind"] != "system"]
            summary = _summary(frame)
            trigger = None
            if len(summary) > 1:
                name = str(summary["segment"].iloc[0])
                rows = frame[frame["segment"] == name]
                texts = {str(r.interaction_id): str(r.text) for r in rows.itertuples()}
                common = Counter(t.strip() for t in texts.values()).most_common(1)[0][0]
                trigger = Trigger(segment=name, text=common, texts=texts,
                                  mean_attribution=float(summary["mean"].iloc[0]),
                                  runner_up=float(summary["mean"].iloc[1]),
                                  top_in=int(summary["top_in"].iloc[0]),
                                  attribution_run=result.run_id)
            self._memo["trigger"] = trigger
        return self._memo["trigger"]

    def control_spans(self, interaction_id: str, text: str) -> list[str]:
        """``random_spans`` word-aligned spans of the prompt's last user turn, about as long as
        ``text`` and not overlapping it (drawn from the seed and the interaction id)."""
        from llmrca.attribution.api import _free_regions, _word_spans
        from llmrca.ids import content_int

        row = self.interactions().set_index("interaction_id").loc[interaction_id]
        users = [m for m in row["messages"] if m.get("role") == "user"]
        message = str(users[-1].get("content") or "") if users else ""
        start = message.find(text)
        if start < 0:
            # The trigger is not in the last user turn (drop_span could not delete it there):
            # no controls, so the prompt is left out of the deletion test.
            return []
        avoid = (start, start + len(text))
        rng = random.Random(content_int(self.seed, interaction_id, "control-spans"))
        length = len(text)
        # drop_span deletes the first occurrence: keep spans deleted where they were drawn.
        pool = [(diff, begin, stop) for lo, hi in _free_regions(len(message), [avoid])
                for diff, begin, stop in _word_spans(message, lo, hi, length)
                if message[begin:stop].strip() and message.find(message[begin:stop]) == begin]
        if not pool:
            return []
        best = min(c[0] for c in pool)
        pool = [c for c in pool if c[0] <= best + max(4, length // 4)]
        # Distinct spans: a span drawn twice would count its samples twice in the pooled rate.
        texts = list(dict.fromkeys(message[b:e] for _, b, e in pool))
        return rng.sample(texts, min(self.random_spans, len(texts)))

    def deletion_replays(self) -> dict[str, Any]:
        """Per offending prompt: a replay on the previous and deployed versions of the prompt as
        logged, with the trigger deleted (``drop top``) and with control spans deleted, judged
        by :attr:`deletion_judges`."""
        if "deletions" not in self._memo:
            from llmrca.replay import drop_span

            trigger = self.trigger()
            out: dict[str, Any] = {}
            if trigger is not None:
                versions = [v for v in (self.previous, self.deployed) if v]
                for iid, text in trigger.texts.items():
                    controls = self.control_spans(iid, text)
                    variants = [drop_span(text)] + [drop_span(s) for s in controls
                                                    if s != text]
                    result = self.replay(versions, variants, interaction_ids=[iid],
                                         judges=self.deletion_judges)
                    out[iid] = {"result": result, "top": drop_span(text).name,
                                "controls": [drop_span(s).name for s in controls if s != text],
                                "control_texts": controls}
            self._memo["deletions"] = out
        return self._memo["deletions"]

    def pooled(self, result, version: str, variants: Sequence[str], iid: str, *,
               judge: str | None = None, label: str | None = None) -> tuple[int, int]:
        """``(k, n)`` of one prompt pooled over several variants (the control spans)."""
        k = n = 0
        for variant in variants:
            kk, nn = self.counts(result, version, variant, judge=judge, label=label).get(
                iid, (0, 0))
            k, n = k + kk, n + nn
        return k, n

    def __repr__(self) -> str:
        return (f"Evidence(incident_id={self.incident_id!r}, deployed={self.deployed!r}, "
                f"previous={self.previous!r}, samples={self.samples}, seed={self.seed})")


def _summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per segment name: mean attribution and ``top_in`` (prompts where it ranks first among
    the segments kept), largest mean first."""
    if frame.empty:
        return pd.DataFrame(columns=["segment", "mean", "top_in"])
    best = frame.groupby("interaction_id")["attribution"].transform("max")
    top = frame.assign(top=frame["attribution"] == best).drop_duplicates(
        ["interaction_id", "top"]).query("top")
    grouped = frame.groupby("segment", sort=False)
    out = pd.DataFrame({"mean": grouped["attribution"].mean(),
                        "top_in": top.groupby("segment").size()
                        .reindex(grouped["attribution"].mean().index, fill_value=0)})
    return out.sort_values("mean", ascending=False, kind="mergesort").reset_index()

