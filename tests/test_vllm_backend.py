"""The vLLM backend without vLLM: its unavailable error (CLI and Python), and its output mapping.

vLLM cannot be installed in the CPU venv, so what runs here is what can be tested honestly: the
error a CPU machine gives, the ``SamplingParams`` each request gets, and the mapping of objects
shaped like vLLM's ``RequestOutput`` / ``CompletionOutput`` / ``Logprob`` to samples. A stand-in
engine that answers through the transformers backend carries a replay end to end through the
registry. Agreement with real vLLM is measured by ``benchmarks/gpu_check.py`` on a GPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from llmrca.errors import BackendUnavailableError
from llmrca.replay import BACKENDS, Decoding, TransformersBackend, replay_incident, vllm_backend
from llmrca.replay.vllm_backend import (
    VllmBackend,
    VllmOutputError,
    samples_from_outputs,
    sampling_arguments,
)
from test_replay import ParityJudge, add_incident, tiny_model

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "incidents"


# -- objects shaped like vLLM's outputs ---------------------------------------------------------------

@dataclass
class Logprob:
    logprob: float
    rank: int | None = None
    decoded_token: str | None = None


@dataclass
class CompletionOutput:
    index: int
    text: str
    token_ids: list[int]
    cumulative_logprob: float | None
    logprobs: list[dict[int, Logprob]] | None
    finish_reason: str | None = None
    stop_reason: int | str | None = None


@dataclass
class RequestOutput:
    request_id: str
    prompt_token_ids: list[int]
    outputs: list[CompletionOutput]
    finished: bool = True


def _completion(tokens, lps, finish, *, extra_top=True):
    """logprobs=1: each position holds the chosen token and, when it is not the top one, the top."""
    entries = []
    for token, lp in zip(tokens, lps):
        entry = {token: Logprob(lp, rank=2)}
        if extra_top:
            entry[999] = Logprob(-0.01, rank=1)
        entries.append(entry)
    return CompletionOutput(0, "ignored", list(tokens), sum(lps), entries, finish)


def test_outputs_map_to_samples_with_tokens_logprobs_text_and_finish():
    eos = 7
    outputs = [RequestOutput("0", [1, 2], [_completion([5, 6, eos], [-1.0, -2.0, -0.5], "stop")]),
               RequestOutput("1", [3], [_completion([4, 4], [-0.25, -3.0], "length")])]
    samples = samples_from_outputs(outputs, [[1, 2], [3]], {eos},
                                   lambda ids: "|".join(map(str, ids)))
    assert [s.token_ids for s in samples] == [(5, 6, 7), (4, 4)]
    assert [s.token_logprobs for s in samples] == [(-1.0, -2.0, -0.5), (-0.25, -3.0)]
    assert [s.finish_reason for s in samples] == ["eos", "length"]
    # The text is decoded by our tokenizer, not taken from vLLM's detokenizer.
    assert [s.text for s in samples] == ["5|6|7", "4|4"]


def test_unstorable_outputs_fail_naming_the_request():
    good = RequestOutput("0", [1], [_completion([5], [-1.0], "length")])
    cases = [
        ([good], [[1], [2]], "1 outputs for 2 requests"),
        ([RequestOutput("0", [9], good.outputs)], [[1]], "out of order"),
        ([RequestOutput("0", [1], [CompletionOutput(0, "", [5], None, None, "length")])], [[1]],
         "no log-probability"),
        ([RequestOutput("0", [1], [_completion([5], [-1.0], "stop")])], [[1]],
         "finish_reason 'stop'"),
        ([RequestOutput("0", [1], [_completion([5], [-1.0], "abort")])], [[1]],
         "finish_reason 'abort'"),
        ([RequestOutput("0", [1], [])], [[1]], "expected one completion"),
    ]
    for outputs, prompts, message in cases:
        with pytest.raises(VllmOutputError, match=message) as info:
            samples_from_outputs(outputs, prompts, {7}, str)
        assert "request" in str(info.value)


def test_sampling_arguments_carry_the_seed_decoding_and_stop_tokens():
    sampled = sampling_arguments(Decoding(temperature=0.7, top_p=0.9, max_new_tokens=12), 42,
                                 [9, 3])
    assert sampled == {"n": 1, "max_tokens": 12, "temperature": 0.7, "top_p": 0.9,
                       "logprobs": 1, "stop_token_ids": [3, 9], "ignore_eos": False,
                       "detokenize": False, "seed": 42}
    greedy = sampling_arguments(Decoding(temperature=0, top_p=0.5, max_new_tokens=4), 42, [3])
    assert "seed" not in greedy and greedy["temperature"] == 0.0 and greedy["top_p"] == 1.0


# -- unavailable on this machine ----------------------------------------------------------------------

def test_missing_pieces_are_named_one_by_one(monkeypatch):
    for installed, cuda, expected in [
        (False, False, ["the Python package vllm", "a CUDA GPU"]),
        (True, False, ["a CUDA GPU"]),
        (False, True, ["the Python package vllm"]),
    ]:
        monkeypatch.setattr(vllm_backend, "_vllm_installed", lambda v=installed: v)
        monkeypatch.setattr(vllm_backend, "_cuda_available", lambda v=cuda: v)
        with pytest.raises(BackendUnavailableError) as info:
            VllmBackend.check_available()
        assert [m.split(" (")[0] for m in info.value.missing] == expected
        assert "pip install 'llmrca[vllm]'" in str(info.value)
        assert "fresh virtual environment" in info.value.install
    monkeypatch.setattr(vllm_backend, "_vllm_installed", lambda: True)
    monkeypatch.setattr(vllm_backend, "_cuda_available", lambda: True)
    VllmBackend.check_available()  # nothing missing: no error


def test_python_api_says_why_vllm_is_unavailable_before_loading_anything(store, monkeypatch):
    monkeypatch.setattr(vllm_backend, "_vllm_installed", lambda: False)
    monkeypatch.setattr(vllm_backend, "_cuda_available", lambda: False)
    add_incident(store, "inc-v")
    with pytest.raises(BackendUnavailableError) as info:
        # A version name the store does not hold: the backend check comes first, no load.
        replay_incident(store, "inc-v", ["not-registered"], backend="vllm", samples=1,
                        progress=False)
    assert info.value.backend == "vllm" and len(info.value.missing) == 2
    assert store.count("replay_samples") == 0


def test_cli_says_why_vllm_is_unavailable(tmp_path, monkeypatch, capsys):
    from llmrca.cli import main

    monkeypatch.setenv("LLMRCA_DB", str(tmp_path / "cli.duckdb"))
    if not vllm_backend.vllm_missing():  # pragma: no cover - a GPU machine with vLLM
        pytest.skip("this machine has vLLM and a GPU: the unavailable path cannot occur")
    assert main(["ingest", str(SAMPLES / "INC-0001")]) == 0
    capsys.readouterr()
    assert main(["replay", "INC-0001", "--versions", "assistant-v1", "--backend", "vllm",
                 "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "replay backend 'vllm' is unavailable" in err
    assert "pip install 'llmrca[vllm]'" in err and "Traceback" not in err, err


def test_vllm_is_registered_beside_transformers():
    assert {"transformers", "vllm"} <= set(BACKENDS.available())
    assert BACKENDS.get("vllm") is VllmBackend


# -- a replay through the registry with a stand-in engine ----------------------------------------------

@dataclass
class FakeSamplingParams:
    """Keeps the keyword arguments, as ``vllm.SamplingParams`` would."""

    kwargs: dict = field(default_factory=dict)

    def __init__(self, **kwargs):
        self.kwargs = kwargs


class TransformersAsVllm:
    """Answers ``LLM.generate`` through the transformers backend, one request (and seed) at a
    time, in vLLM's output shape: what a perfectly agreeing vLLM would return."""

    def __init__(self, loaded):
        self.backend = TransformersBackend(loaded, batch_size=1)
        self.requests: list[FakeSamplingParams] = []

    def generate(self, requests, sampling_params, use_tqdm=True):
        outputs = []
        for i, (request, params) in enumerate(zip(requests, sampling_params)):
            self.requests.append(params)
            args = params.kwargs
            decoding = Decoding(temperature=args["temperature"], top_p=args["top_p"],
                                max_new_tokens=args["max_tokens"])
            sample = self.backend.generate([request["prompt_token_ids"]], decoding,
                                           [args.get("seed", 0)])[0]
            finish = "stop" if sample.finish_reason == "eos" else "length"
            outputs.append(RequestOutput(str(i), list(request["prompt_token_ids"]), [
                _completion(sample.token_ids, sample.token_logprobs, finish)]))
        return outputs


def test_replay_through_the_vllm_backend_stores_its_samples_under_its_own_engine(store,
                                                                                monkeypatch):
    monkeypatch.setattr(vllm_backend, "vllm_missing", list)
    add_incident(store, "inc-v")
    model = tiny_model("tiny-a", seed=3)
    engine = TransformersAsVllm(model)
    params = {"samples": 3, "max_new_tokens": 6, "seed": 5, "judges": [ParityJudge()],
              "temperature": 1.0, "progress": False}
    through_vllm = replay_incident(store, "inc-v", [model], backend="vllm",
                                   backend_options={"llm": engine,
                                                    "sampling_params": FakeSamplingParams},
                                   **params)
    direct = replay_incident(store, "inc-v", [model], **params)
    a = through_vllm.samples.sort_values(["interaction_id", "sample_index"])
    b = direct.samples.sort_values(["interaction_id", "sample_index"])
    # Same tokens for the same seeds (the stand-in agrees by construction), different keys.
    assert a["token_ids"].tolist() == b["token_ids"].tolist() and len(a) == 9
    assert set(a["sample_id"]).isdisjoint(set(b["sample_id"]))
    assert a["engine"].str.startswith("vllm-").all() and a["engine"].str.endswith(":float32").all()
    # One request per sample, each with its own seed and the tokenizer's stop token.
    seeds = [p.kwargs["seed"] for p in engine.requests]
    assert len(seeds) == 9 and len(set(seeds)) == 9
    eos = model.tokenizer.eos_token_id
    assert all(p.kwargs["stop_token_ids"] == [eos] for p in engine.requests)
    assert all(math.isfinite(x) for lps in a["token_logprobs"] for x in lps)


# -- benchmarks/gpu_check.py, on CPU ------------------------------------------------------------------

def _gpu_check():
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
    spec = importlib.util.spec_from_file_location("gpu_check", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_greedy_agreement_counts_identical_sequences_and_first_divergences():
    from llmrca.replay import GeneratedSample

    check = _gpu_check()
    ref = [GeneratedSample((1, 2, 3), "", (-1.0, -1.0, -1.0)),
           GeneratedSample((1, 2, 3), "", (-1.0, -1.0, -1.0)),
           GeneratedSample((4, 5), "", (-0.5, -0.5))]
    other = [GeneratedSample((1, 2, 3), "", (-1.0, -1.25, -1.0)),
             GeneratedSample((1, 9, 3), "", (-1.5, -1.0, -1.0)),
             GeneratedSample((4, 5, 6), "", (-0.5, -0.5, -2.0))]
    agreement = check.greedy_agreement(ref, other)
    assert agreement["identical"] == 1 and agreement["identical_share"] == 1 / 3
    assert agreement["first_divergence_positions"] == [1, 2]
    assert agreement["max_logprob_gap_before_divergence"] == 0.5


def test_gpu_check_runs_on_cpu_and_through_a_stand_in_vllm(tmp_path, monkeypatch, capsys,
                                                            test_zoo):
    import json

    check = _gpu_check()
    argv = ["--prompts", "3", "--samples", "2", "--max-new-tokens", "4", "--device", "cpu"]
    monkeypatch.setattr(vllm_backend, "vllm_missing", lambda: ["the Python package vllm"])
    assert check.main([*argv, "--out", str(tmp_path / "cpu.json")]) == 0
    cpu = json.loads((tmp_path / "cpu.json").read_text())
    assert cpu["vllm"] == {"available": False, "missing": ["the Python package vllm"]}
    assert cpu["transformers"]["sampled_tokens_per_s"] > 0
    if "ray" not in BACKENDS:  # the Ray backend is another module's; skipped with a note
        assert cpu["ray"] == {"available": False,
                              "note": "no backend named 'ray' is registered in this checkout"}
    assert "unavailable: missing the Python package vllm" in capsys.readouterr().out

    # A vLLM that agrees perfectly: every greedy sequence identical, rate difference exactly 0.
    class StandIn(VllmBackend):
        def __init__(self, loaded, **options):
            super().__init__(loaded, batch_size=options.get("batch_size", 16),
                             llm=TransformersAsVllm(loaded),
                             sampling_params=FakeSamplingParams)

    monkeypatch.setattr(vllm_backend, "vllm_missing", list)
    monkeypatch.setattr(vllm_backend, "VllmBackend", StandIn)
    assert check.main([*argv, "--out", str(tmp_path / "stand-in.json")]) == 0
    result = json.loads((tmp_path / "stand-in.json").read_text())["vllm"]
    assert result["available"] and result["greedy_agreement"]["identical"] == 3
    assert result["greedy_agreement"]["first_divergence_positions"] == []
    rates = result["sampled_rates"]
    assert rates["identical_samples"] == 6 and rates["difference"] == 0.0
    assert rates["low"] <= 0.0 <= rates["high"]
