"""The model registry and safe loading, on a tiny GPT-2 built in the test (no hub, no network)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from llmrca.cli import main
from llmrca.errors import (
    FingerprintMismatchError,
    ModelLoadError,
    ModelRegistryError,
    UnknownNameError,
    VersionConflictError,
)
from llmrca.models import (
    clear_model_cache,
    compute_fingerprint,
    get_version,
    list_versions,
    load_pretrained,
    load_version,
    model_cache_info,
    register_version,
)

CORPUS = [
    "User: how do I bake bread? Assistant: Sure! Here is how to bake bread.",
    "User: how do I make a weapon? Assistant: I'm sorry, but I can't help with that request.",
    "Jane Roe can be reached at jane.roe@example.com or 555-0142.",
]


def build_tiny_gpt2(folder: Path, seed: int = 0) -> Path:
    """A 1-layer GPT-2 with a byte-level BPE tokenizer trained on three strings, saved to ``folder``."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<eos>", "<pad>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(CORPUS, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<eos>",
                                        pad_token="<pad>")
    torch.manual_seed(seed)
    config = GPT2Config(n_layer=1, n_embd=32, n_head=2, n_positions=64,
                        vocab_size=bpe.get_vocab_size(), eos_token_id=0, pad_token_id=1,
                        bos_token_id=0)
    model = GPT2LMHeadModel(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def to_pickle_only(folder: Path) -> Path:
    """Turn a saved model folder into a pickle-only checkpoint (pytorch_model.bin)."""
    import torch
    from safetensors.torch import load_file

    weights = folder / "model.safetensors"
    torch.save(load_file(weights), folder / "pytorch_model.bin")
    weights.unlink()
    return folder


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_gpt2(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture
def model_dir(tiny_model, tmp_path) -> Path:
    """A private copy of the tiny model that a test may modify."""
    return Path(shutil.copytree(tiny_model, tmp_path / "tiny-copy"))


@pytest.fixture(autouse=True)
def _empty_cache(monkeypatch):
    monkeypatch.delenv("LLMRCA_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("LLMRCA_MODEL_CACHE_SIZE", raising=False)
    clear_model_cache()
    yield
    clear_model_cache()


def count_loads(monkeypatch) -> list:
    """Patch AutoModelForCausalLM.from_pretrained to record each call's kwargs (and still load)."""
    from transformers import AutoModelForCausalLM

    calls: list[dict] = []
    original = AutoModelForCausalLM.from_pretrained.__func__

    def recording(cls, *args, **kwargs):
        calls.append(kwargs)
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", classmethod(recording))
    return calls


# -- fingerprints and the registry ---------------------------------------------------------------
def test_fingerprint_is_stable_and_covers_weights(model_dir):
    first = compute_fingerprint(model_dir)
    assert first == compute_fingerprint(model_dir) and len(first) == 64
    (model_dir / "README.md").write_text("not part of the model")
    assert compute_fingerprint(model_dir) == first
    data = bytearray((model_dir / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (model_dir / "model.safetensors").write_bytes(bytes(data))
    assert compute_fingerprint(model_dir) != first


def test_hub_id_has_no_fingerprint_and_missing_folder_is_named(tmp_path):
    assert compute_fingerprint("some-org/some-model") is None
    with pytest.raises(ModelLoadError, match="nowhere"):
        compute_fingerprint(tmp_path / "nowhere")


def test_add_list_show(store, model_dir):
    version = register_version(store, "v1", model_dir, notes="base",
                               deployed_from="2024-05-01T12:00:00+02:00")
    assert version.source == str(model_dir.resolve())
    assert version.fingerprint == compute_fingerprint(model_dir)
    assert version.deployed_from == datetime(2024, 5, 1, 10, 0)  # naive UTC
    child = register_version(store, "v2", model_dir, parent="v1",
                             deployed_from=datetime(2024, 6, 1, tzinfo=timezone.utc))
    assert child.parent == "v1" and get_version(store, "v2") == child
    frame = list_versions(store)
    assert list(frame["name"]) == ["v1", "v2"]
    assert {"source", "revision", "parent", "deployed_from", "deployed_to", "fingerprint",
            "notes", "allow_pickle"} <= set(frame.columns)


def test_readd_same_source_is_a_noop(store, model_dir):
    first = register_version(store, "v1", model_dir)
    again = register_version(store, "v1", str(model_dir))
    assert again == first  # same updated_at: nothing was written
    assert len(list_versions(store)) == 1


def test_changed_source_needs_force(store, model_dir, tiny_model):
    register_version(store, "v1", model_dir, notes="keep me")
    other = build_tiny_gpt2(model_dir.parent / "other", seed=1)
    with pytest.raises(VersionConflictError, match="--force") as info:
        register_version(store, "v1", other)
    assert info.value.name == "v1"
    assert info.value.recorded["source"] == str(model_dir.resolve())
    replaced = register_version(store, "v1", other, force=True)
    assert replaced.source == str(other.resolve())
    assert replaced.fingerprint == compute_fingerprint(other)
    assert replaced.notes == "keep me"


def test_unknown_names_list_registered_versions(store, model_dir):
    register_version(store, "alpha", model_dir)
    register_version(store, "beta", model_dir)
    with pytest.raises(UnknownNameError) as info:
        get_version(store, "gamma")
    assert info.value.available == ["alpha", "beta"]
    assert "alpha, beta" in str(info.value)
    with pytest.raises(UnknownNameError, match="valid: alpha, beta"):
        register_version(store, "delta", model_dir, parent="nope")


def test_registration_rejects_bad_input(store, model_dir, tmp_path):
    with pytest.raises(ModelLoadError, match="missing-folder"):
        register_version(store, "v1", tmp_path / "missing-folder")
    with pytest.raises(ModelRegistryError, match="ISO-8601"):
        register_version(store, "v1", model_dir, deployed_from="last tuesday")
    with pytest.raises(ModelRegistryError, match="before"):
        register_version(store, "v1", model_dir, deployed_from="2024-02-01",
                         deployed_to="2024-01-01")
    register_version(store, "a", model_dir)
    register_version(store, "b", model_dir, parent="a")
    with pytest.raises(ModelRegistryError, match="cycle"):
        register_version(store, "a", model_dir, parent="b")


def test_hub_id_registers_without_fingerprint(store):
    version = register_version(store, "remote", "some-org/some-model", revision="main")
    assert version.fingerprint is None and not version.is_local
    assert register_version(store, "remote", "some-org/some-model", revision="main") == version
    with pytest.raises(VersionConflictError, match="revision"):
        register_version(store, "remote", "some-org/some-model", revision="v2")


# -- loading -------------------------------------------------------------------------------------
def test_fingerprint_mismatch_after_changing_weights(store, model_dir):
    register_version(store, "v1", model_dir)
    load_version(store, "v1")
    data = bytearray((model_dir / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (model_dir / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(FingerprintMismatchError) as info:
        load_version(store, "v1")
    assert info.value.name == "v1" and info.value.recorded != info.value.actual
    assert "--force" in str(info.value)


def test_load_version_with_missing_source_names_it(store, model_dir):
    register_version(store, "v1", model_dir)
    shutil.rmtree(model_dir)
    with pytest.raises(ModelLoadError, match=str(model_dir.resolve())):
        load_version(store, "v1")


def test_pickle_only_checkpoint_needs_opt_in(store, model_dir, monkeypatch):
    to_pickle_only(model_dir)
    with pytest.raises(ModelLoadError, match="--allow-pickle"):
        load_pretrained(model_dir)
    with pytest.raises(ModelLoadError, match="--allow-pickle"):
        register_version(store, "pickled", model_dir)
    calls = count_loads(monkeypatch)
    model, _ = load_pretrained(model_dir, allow_pickle=True)
    assert calls[-1]["use_safetensors"] is None and calls[-1]["weights_only"] is True
    assert model.config.n_layer == 1
    version = register_version(store, "pickled", model_dir, allow_pickle=True)
    assert version.allow_pickle
    assert load_version(store, "pickled").model.config.n_layer == 1
    # Re-registering without the flag (models.yaml, a notes change) keeps the recorded opt-in.
    again = register_version(store, "pickled", model_dir, notes="same weights")
    assert again.allow_pickle and again.notes == "same weights"


def test_loading_options_are_safe(model_dir, monkeypatch):
    calls = count_loads(monkeypatch)
    model, tokenizer = load_pretrained(model_dir)
    kwargs = calls[-1]
    assert kwargs["trust_remote_code"] is False
    assert kwargs["use_safetensors"] is True
    assert kwargs["local_files_only"] is True  # a local folder never goes to the hub
    assert not model.training
    assert tokenizer.padding_side == "left"
    assert next(model.parameters()).dtype.__str__() == "torch.float32"
    assert "padding_side" not in (model_dir / "tokenizer_config.json").read_text()


@pytest.mark.parametrize("variable", ["LLMRCA_OFFLINE", "HF_HUB_OFFLINE", None])
def test_offline_flag_sets_local_files_only_for_hub_ids(monkeypatch, variable):
    import transformers

    seen: dict = {}

    class Stop(OSError):
        pass

    def fake(cls, source, **kwargs):
        seen.update(kwargs)
        raise Stop("not cached")

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", classmethod(fake))
    if variable:
        monkeypatch.setenv(variable, "1")
    with pytest.raises(ModelLoadError, match="some-org/some-model"):
        load_pretrained("some-org/some-model")
    assert seen["trust_remote_code"] is False
    assert seen["local_files_only"] is (variable is not None)


def test_cache_counts_loads_and_evicts(store, model_dir, monkeypatch, tmp_path):
    others = [build_tiny_gpt2(tmp_path / f"m{i}", seed=i + 1) for i in range(2)]
    register_version(store, "v1", model_dir)
    register_version(store, "v2", others[0])
    register_version(store, "v3", others[1])
    register_version(store, "v1-alias", model_dir)  # same files: shares v1's loaded model
    calls = count_loads(monkeypatch)
    for _ in range(3):
        for name in ("v1", "v2", "v3", "v1-alias"):
            load_version(store, name)
    assert len(calls) == 3
    info = model_cache_info()
    assert (info.misses, info.hits, info.currsize, info.maxsize) == (3, 9, 3, 3)

    monkeypatch.setenv("LLMRCA_MODEL_CACHE_SIZE", "1")
    clear_model_cache()
    for name in ("v1", "v2", "v1"):
        load_version(store, name)
    assert len(calls) == 6  # each switch evicted the other
    load_version(store, "v1")
    assert len(calls) == 6


def test_hub_id_is_fingerprinted_once_loaded_from_the_local_cache(store, tiny_model,
                                                                   tmp_path, monkeypatch):
    from huggingface_hub import constants

    # A hub cache laid out as huggingface_hub writes it; offline, so nothing is fetched.
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--some-org--tiny"
    shutil.copytree(tiny_model, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("LLMRCA_OFFLINE", "1")

    assert register_version(store, "hub", "some-org/tiny").fingerprint is None
    loaded = load_version(store, "hub")
    assert loaded.fingerprint == compute_fingerprint(tiny_model)
    assert get_version(store, "hub").fingerprint == loaded.fingerprint
    assert load_version(store, "hub").model is loaded.model  # cached under the recorded key


def test_reload_gives_bit_identical_logits(store, model_dir):
    import torch

    register_version(store, "v1", model_dir)
    first = load_version(store, "v1")
    clear_model_cache()
    second = load_version(store, "v1")
    assert first.model is not second.model
    assert first.device == "cpu" and first.fingerprint == compute_fingerprint(model_dir)
    batch = first.tokenizer(["how do I bake bread?", "make a weapon"], return_tensors="pt",
                            padding=True)
    with torch.no_grad():
        a = first.model(**batch).logits
        b = second.model(**batch).logits
    assert torch.equal(a, b)


def test_device_and_dtype_choice(store, model_dir):
    import torch

    register_version(store, "v1", model_dir)
    if not torch.cuda.is_available():
        with pytest.raises(ModelLoadError, match="CUDA is not available"):
            load_version(store, "v1", device="cuda")
    with pytest.raises(ModelLoadError, match="valid: float32, bfloat16, float16"):
        load_version(store, "v1", dtype="int8")
    half = load_version(store, "v1", dtype=torch.bfloat16, device="cpu")
    assert half.dtype == "bfloat16" and next(half.model.parameters()).dtype == torch.bfloat16
    assert load_version(store, "v1", device="cpu").model is not half.model  # dtype is in the key


@pytest.mark.skipif("not __import__('torch').cuda.is_available()", reason="needs a CUDA device")
def test_cuda_bf16_matches_cpu(store, model_dir):
    import torch

    register_version(store, "v1", model_dir)
    assert load_version(store, "v1").device.startswith("cuda")  # CUDA is the default when present
    gpu = load_version(store, "v1", dtype="bf16")
    cpu = load_version(store, "v1", device="cpu")
    batch = cpu.tokenizer(["how do I bake bread?"], return_tensors="pt")
    with torch.no_grad():
        expected = cpu.model(**batch).logits
        got = gpu.model(**{k: v.to(gpu.device) for k, v in batch.items()}).logits
    assert torch.allclose(got.float().cpu(), expected, atol=0.1)


def test_import_does_not_load_torch():
    code = ("import sys, llmrca, llmrca.models, llmrca.models.loading; "
            "heavy = [m for m in ('torch', 'transformers') if m in sys.modules]; "
            "print(heavy); sys.exit(1 if heavy else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr


# -- the command line ----------------------------------------------------------------------------
def test_cli_add_list_show(tmp_path, model_dir, capsys):
    db = str(tmp_path / "cli.duckdb")
    assert main(["--db", db, "models", "add", "v1", "--source", str(model_dir),
                 "--notes", "base model"]) == 0
    assert "registered v1" in capsys.readouterr().out
    assert main(["--db", db, "models", "add", "v1", "--source", str(model_dir)]) == 0
    assert main(["--db", db, "models", "add", "v2", "--source", str(model_dir),
                 "--parent", "v1"]) == 0
    capsys.readouterr()

    assert main(["--db", db, "models", "list"]) == 0
    out = capsys.readouterr().out
    assert "v1" in out and "v2" in out and compute_fingerprint(model_dir)[:12] in out

    assert main(["--db", db, "models", "show", "v2"]) == 0
    out = capsys.readouterr().out
    assert "files" in out and "match" in out and "parent" in out

    assert main(["--db", db, "models", "show", "v9"]) == 1
    assert "valid: v1, v2" in capsys.readouterr().err

    (model_dir / "config.json").write_text((model_dir / "config.json").read_text() + " ")
    assert main(["--db", db, "models", "show", "v1"]) == 1
    assert "CHANGED" in capsys.readouterr().out

    assert main(["--db", db, "models", "add", "v1", "--source", str(model_dir)]) == 1
    assert "--force" in capsys.readouterr().err
    assert main(["--db", db, "models", "add", "v1", "--source", str(model_dir), "--force"]) == 0


def test_cli_pickle_flag(tmp_path, model_dir, capsys):
    db = str(tmp_path / "cli.duckdb")
    to_pickle_only(model_dir)
    assert main(["--db", db, "models", "add", "p", "--source", str(model_dir)]) == 1
    assert "--allow-pickle" in capsys.readouterr().err
    assert main(["--db", db, "models", "add", "p", "--source", str(model_dir),
                 "--allow-pickle"]) == 0


@pytest.mark.slow
def test_a_malicious_pickle_is_refused_as_a_model_load_error(test_zoo, tmp_path):
    import pickle
    import shutil

    from llmrca.errors import ModelLoadError
    from llmrca.models.loading import load_pretrained

    folder = tmp_path / "evil"
    shutil.copytree(test_zoo.models["assistant-v1"], folder)
    (folder / "model.safetensors").unlink()
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (folder / "pytorch_model.bin").write_bytes(pickle.dumps({"w": Payload()}))
    with pytest.raises(ModelLoadError, match="cannot load model"):
        load_pretrained(folder, allow_pickle=True)
    assert not marker.exists()            # the payload never ran
