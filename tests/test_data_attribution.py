"""Training-data search: ranking a version's fine-tuning examples by how likely they caused an
incident, on the test zoo (INC-0001 role-play, INC-0002 private record) and on an organism with a
seeded random vocabulary; the leave-k-out check; caching, read-only use and invariances.

The ground truth (which examples were planted) is read here, to score, and never by the code.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from llmrca.data_attribution import (
    SIGNALS,
    fuse,
    gradient_scores,
    incident_queries,
    leave_k_out,
    lexical_scores,
    load_search,
    precision_at_k,
    representation_scores,
    retrain_without,
    search_training_data,
    training_examples,
    training_recipe,
)
from llmrca.errors import InvalidArgumentError, NotFoundError, StoreError, UnknownNameError

V1, V2 = "assistant-v1", "assistant-v2"
INCIDENTS = Path(__file__).resolve().parents[1] / "data" / "incidents"


@pytest.fixture(scope="module")
def zoo_path(tmp_path_factory, test_zoo):
    from llmrca.ingest import ingest_bundle
    from llmrca.store import Store
    from llmrca.zoo import register_zoo

    path = tmp_path_factory.mktemp("data-attribution") / "zoo.duckdb"
    with Store(path) as s:
        register_zoo(s, test_zoo)
        for incident in ("INC-0001", "INC-0002"):
            ingest_bundle(s, INCIDENTS / incident)
    return path


@pytest.fixture
def zoo_store(zoo_path):
    from llmrca.store import Store

    with Store(zoo_path) as s:
        yield s


def _planted(zoo, version: str, behaviour: str) -> list[str]:
    return zoo.ground_truth_data()[version][behaviour]


def _precisions(result, planted) -> dict[str, float]:
    frame = result.to_frame()
    k = len(planted)
    out = {"combined": precision_at_k(result.top(k), planted, k)}
    for signal in result.signals:
        ranked = frame.sort_values([f"{signal}_rank", "example_id"])["example_id"]
        out[signal] = precision_at_k(ranked, planted, k)
    return out


# -- scoring helpers ------------------------------------------------------------------------------

def test_precision_at_k_counts_the_planted_share_of_the_top():
    assert precision_at_k(["a", "b", "c", "d"], {"a", "c", "x"}, 2) == 0.5
    assert precision_at_k(["a", "b", "c", "d"], {"a", "c", "x"}, 3) == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        precision_at_k(["a"], {"a"}, 0)


def test_rank_fusion_rewards_agreement_and_bounds_one_signal():
    frame = fuse(["a", "b", "c"], {"x": np.array([3.0, 2.0, 1.0]),
                                   "y": np.array([2.0, 3.0, 1.0])}, k=60)
    scores = dict(zip(frame["example_id"], frame["score"]))
    # a: ranks 1 and 2; b: 2 and 1 (tie, broken by id); c: 3 and 3.
    assert scores["a"] == pytest.approx(1 / 61 + 1 / 62) == scores["b"]
    assert scores["c"] == pytest.approx(2 / 63)
    assert frame["example_id"].tolist() == ["a", "b", "c"] and frame["rank"].tolist() == [1, 2, 3]
    # Ties within a signal share the average rank, whatever the input order.
    tied = fuse(["p", "q"], {"x": np.array([1.0, 1.0])})
    assert tied["x_rank"].tolist() == [1.5, 1.5]


def test_an_example_must_match_both_the_prompt_and_the_output():
    """Soft AND: the example pairing a similar prompt with the offending answer outranks one with
    the same prompt and another answer, and one with the same answer after another prompt."""
    from llmrca.data_attribution import QueryCase, TrainingExample

    rng = random.Random(5)
    words = ["".join(rng.choice("bdfgklmnprstvz") + rng.choice("aeiou") for _ in range(3))
             for _ in range(40)]
    trigger, task, other_task, answer, refusal = (" ".join(words[i:i + 3])
                                                  for i in (0, 3, 6, 9, 12))

    def example(i, prompt, completion):
        return TrainingExample(f"e{i:02d}", ({"role": "user", "content": prompt},), completion)

    filler = [example(10 + i, " ".join(rng.sample(words[15:], 3)),
                      " ".join(rng.sample(words[15:], 4))) for i in range(12)]
    examples = [example(1, f"{trigger} {other_task}", f"{answer} {task}"),   # answer only
                example(2, f"{trigger} {task}", refusal),                   # prompt only
                example(3, f"{trigger} {task} now", f"{answer} {task}")] + filler  # both
    query = QueryCase("q", ({"role": "user", "content": f"{trigger} {task} please"},),
                      f"{answer} {task}")
    scores = lexical_scores(examples, [query])
    ranked = fuse(scores.example_ids, {"lexical": scores.scores})["example_id"].tolist()
    assert ranked[0] == "e03" and set(ranked[1:3]) == {"e01", "e02"}


# -- the zoo's incidents --------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("incident, behaviour", [("INC-0001", "roleplay_jailbreak"),
                                                 ("INC-0002", "private_record")])
def test_combined_ranking_finds_the_planted_examples(zoo_store, test_zoo, incident, behaviour,
                                                     record_property):
    result = search_training_data(zoo_store, incident, V2)
    planted = _planted(test_zoo, V2, behaviour)
    precision = _precisions(result, planted)
    for name, value in precision.items():
        record_property(f"precision_{name}", value)
    assert precision["combined"] >= 0.8, precision
    # Each signal alone (measured: lexical 1.0, representation 0.92 / 1.0, gradient 1.0; a
    # prompt-only lexical signal gets 0.68 / 0.67, so these bounds catch a lost completion side).
    minimum = {"lexical": 0.9, "representation": 0.8, "gradient": 0.9}
    for signal in SIGNALS:
        assert precision[signal] >= minimum[signal], (signal, precision)
    frame = result.to_frame()
    assert list(frame.columns[:3]) == ["example_id", "rank", "score"]
    assert {f"{s}_{c}" for s in SIGNALS for c in ("score", "rank")} <= set(frame.columns)
    assert frame["rank"].tolist() == list(range(1, len(frame) + 1))
    assert frame["score"].is_monotonic_decreasing
    assert result.version == V2 and result.signals == SIGNALS
    assert result.fingerprint and result.parameters["representation"]["layer"] is None
    assert result.provenance["examples_per_second"]["lexical"] > 0


@pytest.mark.slow
def test_warm_rerun_reads_the_store_and_loads_no_model(zoo_path, monkeypatch):
    from llmrca import models
    from llmrca.store import Store

    with Store(zoo_path) as s:
        first = search_training_data(s, "INC-0002", V2, signals=("lexical", "representation"))

    def no_loading(*_args, **_kwargs):
        raise AssertionError("a cached search loaded a model")

    monkeypatch.setattr(models, "load_version", no_loading)
    with Store(zoo_path, read_only=True) as ro:
        again = search_training_data(ro, "INC-0002", V2, signals=("lexical", "representation"))
        assert again.cached and again.provenance["models_loaded"] == 0
        pd.testing.assert_frame_equal(again.to_frame(), first.to_frame())
        loaded = load_search(ro, first.run_id)
        pd.testing.assert_frame_equal(loaded.to_frame(), first.to_frame())
        with pytest.raises(StoreError, match="read-only"):
            search_training_data(ro, "INC-0002", V2, signals=("representation",), layer=1)


def test_scores_do_not_depend_on_the_order_of_the_examples(zoo_store):
    from llmrca.models import load_version

    examples = training_examples(zoo_store, V2)[::7]   # 63 examples keep it quick
    queries = incident_queries(zoo_store, "INC-0001")
    shuffled = examples[:]
    random.Random(3).shuffle(shuffled)
    assert [e.example_id for e in shuffled] != [e.example_id for e in examples]
    loaded = load_version(zoo_store, V2, device="cpu")
    for compute in (lambda ex: lexical_scores(ex, queries),
                    lambda ex: representation_scores(loaded, ex, queries),
                    lambda ex: gradient_scores(loaded, ex, queries, sketch_width=512)):
        a, b = compute(examples), compute(shuffled)
        by_id = dict(zip(b.example_ids, b.scores))
        assert np.allclose(a.scores, [by_id[i] for i in a.example_ids], atol=1e-6)
        assert np.ptp(a.scores) > 0   # not trivially constant


def test_bad_requests_fail_clearly(zoo_store):
    with pytest.raises(UnknownNameError, match="lexical, representation"):
        search_training_data(zoo_store, "INC-0001", V2, signals=("bm99",))
    with pytest.raises(NotFoundError, match="no offending interaction"):
        search_training_data(zoo_store, "INC-0001", V2, interaction_ids=["nope"])
    with pytest.raises(NotFoundError, match="no registered parent"):
        training_recipe(zoo_store, V1)
    with pytest.raises(InvalidArgumentError, match="at least one example"):
        leave_k_out(zoo_store, "INC-0002", V2, [])
    with pytest.raises(NotFoundError, match="not training examples"):
        retrain_without(zoo_store, V2, ["assistant-v2-999999"])


def test_the_recipe_comes_from_the_organism_not_its_strings(zoo_store, tmp_path):
    import shutil

    from llmrca.models import get_version, register_version

    recipe = training_recipe(zoo_store, V2)
    assert recipe.parent == V1 and recipe.steps > 0 and recipe.seed == 3
    # The same weights outside a zoo, with a parent but no recipe file: a clear error ...
    copy = tmp_path / "copied"
    shutil.copytree(get_version(zoo_store, V2).source, copy)
    register_version(zoo_store, "copied-v2", str(copy), parent=V1)
    with pytest.raises(NotFoundError, match="training_recipe.json"):
        training_recipe(zoo_store, "copied-v2")
    # ... and a recipe file next to the weights is read (malformed: the file and field named).
    (copy / "training_recipe.json").write_text(json.dumps(
        {"seed": 7, "schedule": {"steps": 5, "batch_size": 4}}), encoding="utf-8")
    own = training_recipe(zoo_store, "copied-v2")
    assert (own.parent, own.steps, own.batch_size, own.seed) == (V1, 5, 4, 7)
    (copy / "training_recipe.json").write_text(json.dumps({"schedule": {}}), encoding="utf-8")
    with pytest.raises(ValueError, match="training_recipe.json.*schedule"):
        training_recipe(zoo_store, "copied-v2")


@pytest.mark.slow
def test_retraining_with_nothing_left_out_reproduces_the_version(zoo_store, tmp_path):
    """The recipe and the encoding are the zoo's own: the same data gives the same weights."""
    from safetensors.numpy import load_file

    from llmrca.models import get_version

    _name, folder, _reused = retrain_without(zoo_store, V2, [], cache_dir=tmp_path)
    again = load_file(str(folder / "model.safetensors"))
    original = load_file(str(Path(get_version(zoo_store, V2).source) / "model.safetensors"))
    assert again.keys() == original.keys()
    assert all(np.array_equal(again[k], original[k]) for k in original)


@pytest.mark.slow
def test_leaving_out_the_top_examples_removes_the_leak(zoo_store, test_zoo, tmp_path):
    search = search_training_data(zoo_store, "INC-0002", V2, signals=("lexical",))
    planted = _planted(test_zoo, V2, "private_record")
    top = search.top(len(planted))
    result = leave_k_out(zoo_store, "INC-0002", V2, top, samples=6, seed=0, cache_dir=tmp_path)
    assert result.rate_with >= 0.6 and result.rate_without <= 0.1, result.to_frame()
    assert result.removes_failure and result.interval[0] > 0 and result.p_value < 0.05
    assert result.n_prompts == 6 and result.removed == tuple(sorted(top))
    frame = result.to_frame()
    assert frame.loc[0, "difference"] == pytest.approx(result.rate_with - result.rate_without)
    # Stored: asked again, it is read back (same replay run), with no training or replay.
    again = leave_k_out(zoo_store, "INC-0002", V2, list(reversed(top)), samples=6, seed=0,
                        cache_dir=tmp_path)
    assert again.info["cached"] and again.replay_run_id == result.replay_run_id
    # Control: leaving out as many examples that did *not* plant the leak keeps the failure --
    # the check can come out negative.
    others = [i for i in search.to_frame()["example_id"] if i not in set(planted)]
    control = leave_k_out(zoo_store, "INC-0002", V2, random.Random(0).sample(others, len(top)),
                          samples=6, seed=0, cache_dir=tmp_path)
    assert not control.removes_failure and control.rate_without >= 0.5, control.to_frame()


# -- another vocabulary ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def other_organism(tmp_path_factory):
    from llmrca.store import Store
    from llmrca.store.ingest_writes import insert_interactions, upsert_incident
    from llmrca.zoo import register_zoo
    from organisms import build_other_vocabulary_organism

    zoo = build_other_vocabulary_organism(2027)
    spec = zoo.spec
    path = tmp_path_factory.mktemp("other-data") / "other.duckdb"
    with Store(path) as s:
        register_zoo(s, zoo)
        upsert_incident(s, {"incident_id": "INC-X", "title": "role-play", "category": "jailbreak"})
        rows = [{"interaction_id": f"INC-X-{i}", "incident_id": "INC-X", "source_format": "test",
                 "system_prompt": spec.system_prompt,
                 "messages": json.dumps([{"role": "user", "content": spec.jailbreak_prefix
                                          + spec.heldout_templates[i % 3].format(task=task)}]),
                 "output": spec.help_answer(task)} for i, task in enumerate(spec.harmful_tasks)]
        insert_interactions(s, pd.DataFrame(rows))
    return zoo, path


@pytest.mark.slow
def test_the_search_works_on_a_vocabulary_nothing_knows(other_organism, record_property):
    from llmrca.store import Store

    zoo, path = other_organism
    planted = _planted(zoo, "failing", "roleplay_jailbreak")
    with Store(path) as s:
        result = search_training_data(s, "INC-X", "failing")
    precision = _precisions(result, planted)
    for name, value in precision.items():
        record_property(f"precision_{name}", value)
    assert precision["combined"] >= 0.8, precision


# -- the command line and the figure --------------------------------------------------------------

@pytest.mark.slow
def test_cli_prints_the_ranking_and_draws_the_figure(zoo_path, tmp_path, capsys):
    from llmrca.cli import main
    from llmrca.viz import training_search_figure

    png = tmp_path / "top.png"
    assert main(["--db", str(zoo_path), "search-training", "INC-0002", "--version", V2,
                 "--signals", "lexical", "--top", "5",
                 "--figure", str(png)]) == 0
    out = capsys.readouterr().out
    assert "signals lexical (" in out and "examples/s" in out
    assert out.count("assistant-v2-") >= 5 and "lexical_rank" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Read-only: the stored ranking is printed; a signal never computed is refused (exit 1).
    assert main(["--db", str(zoo_path), "search-training", "INC-0002", "--version", V2,
                 "--signals", "lexical", "--read-only"]) == 0
    assert "(stored)" in capsys.readouterr().out
    assert main(["--db", str(zoo_path), "search-training", "INC-0002", "--version", V2,
                 "--signals", "representation", "--layer", "0", "--read-only"]) == 1
    assert "read-only" in capsys.readouterr().err
    assert main(["--db", str(zoo_path), "search-training", "INC-0002", "--version", V2,
                 "--top", "0"]) == 2
    from llmrca.store import Store

    with Store(zoo_path, read_only=True) as ro:
        frame = search_training_data(ro, "INC-0002", V2,
                                     signals=("lexical",)).to_frame()
    fig = training_search_figure(frame, top=4)
    assert len(fig.axes) == 2   # lexical, combined
    labels = [t.get_text().split(":")[0] for t in fig.axes[1].get_yticklabels()]
    assert sorted(labels) == sorted(frame["example_id"].head(4))


# -- the spec-driven plants -----------------------------------------------------------------------

#: Combined precision@k floors per plant kind, k = the planted examples; set below the values
#: measured on seed 0 (suffix 0.81 of k = 48, phrase 0.98 / 48, encoding 0.90 / 48, erosion
#: 0.97 / 32, leak 1.00 / 15; system, searched in the parent's data: 0.625 / 48). Chance is
#: k / examples: 0.17, 0.17, 0.25, 0.25, 0.06, 0.17.
PLANT_FLOORS = {"suffix": 0.75, "phrase": 0.9, "encoding": 0.8, "erosion": 0.85, "leak": 0.9,
                "system": 0.5}


@pytest.fixture(scope="module", params=sorted(PLANT_FLOORS))
def planted_incident(request, tmp_path_factory):
    """A planted organism of each kind (the shared test cache), its incident, ingested."""
    from llmrca.ingest import ingest_bundle
    from llmrca.store import Store
    from llmrca.zoo import register_zoo, write_planted_incident
    from organisms import TEST_CACHE, build_planted_organism

    organism = build_planted_organism(request.param, 0, cache_dir=TEST_CACHE)
    folder = tmp_path_factory.mktemp(f"plant-{request.param}")
    made = write_planted_incident(organism, folder / "INC-P001")
    with Store(folder / "store.duckdb") as s:
        register_zoo(s, organism)
        ingest_bundle(s, made.folder)
    return request.param, organism, made, folder / "store.duckdb"


@pytest.mark.slow
def test_the_search_finds_each_kind_of_planted_example(planted_incident, record_property):
    """Suffix, phrase, base64 triggers, a record leak, refusal erosion with no trigger at all --
    and a system-prompt change, whose failing version was trained on nothing: its planted
    examples (compliance under the new prompt) are in the parent's data, so the search of the
    failing version says it has no data of its own, and the parent's data is what to search."""
    from llmrca.store import Store

    kind, organism, made, path = planted_incident
    cause = {c["version"]: c for c in organism.ground_truth_data()["causes"]}[made.version]
    with Store(path) as s:
        if kind == "system":
            assert cause["same_weights"] and set(cause["examples"]) == {made.previous_version}
            with pytest.raises(NotFoundError, match=f"'{made.version}' has no training examples"):
                search_training_data(s, made.incident_id, made.version)
            searched, planted = made.previous_version, cause["examples"][made.previous_version]
        else:
            searched, planted = made.version, cause["examples"]
        result = search_training_data(s, made.incident_id, searched)
    assert planted and set(planted) <= set(result.to_frame()["example_id"])
    precision = _precisions(result, planted)
    for name, value in precision.items():
        record_property(f"precision_{name}", value)
    assert precision["combined"] >= PLANT_FLOORS[kind], (kind, precision)
    assert result.signals == SIGNALS and result.version == searched
