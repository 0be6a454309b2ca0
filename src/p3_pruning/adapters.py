"""A LoRA adapter held apart from any base model, so it can be pickled, versioned and passed round to round.

Kedro-free. ``LoraAdapter(config, state_dict)``: ``config`` is the peft ``LoraConfig`` as a JSON-safe
dict, ``state_dict`` the adapter tensors on CPU, keyed exactly as peft writes them to disk
(``base_model.model.<module path>.lora_A.weight`` …). ``save``/``load`` use peft's own folder format
(``adapter_config.json`` + ``adapter_model.safetensors``), so ``PeftModel.from_pretrained`` reads it too.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import logging
from pathlib import Path

import torch

log = logging.getLogger(__name__)

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"


def _jsonable_config(config) -> dict:
    """A peft config (object or dict) as a plain JSON-safe dict (enums → values, sets → sorted lists)."""
    raw = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    out = {}
    for key, value in raw.items():
        if isinstance(value, enum.Enum):
            value = value.value
        elif isinstance(value, (set, frozenset)):
            value = sorted(value)
        out[key] = value
    return json.loads(json.dumps(out))


def lora_config_from_dict(config: dict, **overrides):
    """Rebuild a ``peft.LoraConfig`` from its dict form; keys this peft version does not know are dropped
    with a warning (a config written by a newer peft still loads)."""
    from peft import LoraConfig

    known = {f.name for f in dataclasses.fields(LoraConfig)}
    merged = {**config, **overrides}
    unknown = sorted(set(merged) - known)
    if unknown:
        log.warning("Ignoring LoRA config keys unknown to this peft version: %s", unknown)
    merged.pop("peft_type", None)
    return LoraConfig(**{k: v for k, v in merged.items() if k in known and k != "peft_type"})


@dataclasses.dataclass(eq=False)
class LoraAdapter:
    """LoRA weights + config, independent of a base model.

    config: peft ``LoraConfig`` as a dict. state_dict: ``{name: tensor}`` on CPU (``lora_A``: (r, in),
    ``lora_B``: (out, r) per adapted module).
    """

    config: dict
    state_dict: dict[str, torch.Tensor]

    def __post_init__(self):
        if not isinstance(self.config, dict) or "r" not in self.config:
            raise ValueError(
                f"LoraAdapter.config must be a LoRA config dict with 'r'; got {self.config!r:.200}"
            )
        if not self.state_dict:
            raise ValueError(
                "LoraAdapter.state_dict is empty: an adapter needs its lora_A/lora_B tensors"
            )

    @classmethod
    def from_peft(cls, peft_model, adapter_name: str = "default") -> LoraAdapter:
        """Copy the adapter ``adapter_name`` out of a ``PeftModel`` (tensors detached, cloned to CPU)."""
        from peft import get_peft_model_state_dict

        config = _jsonable_config(peft_model.peft_config[adapter_name])
        config["inference_mode"] = False
        tensors = get_peft_model_state_dict(peft_model, adapter_name=adapter_name)
        state = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in tensors.items()}
        return cls(config=config, state_dict=state)

    @property
    def num_parameters(self) -> int:
        """Number of adapter weights."""
        return sum(t.numel() for t in self.state_dict.values())

    def apply(self, base_model, *, trainable: bool = False, adapter_name: str = "default"):
        """Wrap ``base_model`` in a ``PeftModel`` carrying these weights.

        The base model's linear layers are wrapped in place (``peft_model.unload()`` restores them).
        ``trainable=False`` freezes the adapter and puts the model in eval mode.
        """
        from peft import get_peft_model, set_peft_model_state_dict

        config = lora_config_from_dict(self.config, inference_mode=not trainable)
        # Creating the LoRA layers draws random initial weights that are overwritten right after:
        # keep them from moving the caller's RNG streams.
        devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
        with torch.random.fork_rng(devices=devices):
            peft_model = get_peft_model(base_model, config, adapter_name=adapter_name)
        result = set_peft_model_state_dict(peft_model, self.state_dict, adapter_name=adapter_name)
        missing_lora = [k for k in result.missing_keys if "lora_" in k]
        if result.unexpected_keys or missing_lora:
            peft_model.unload()
            raise ValueError(
                "LoRA adapter does not fit this base model: "
                f"unexpected keys {list(result.unexpected_keys)[:5]}, missing adapter keys {missing_lora[:5]} "
                f"(adapter targets {self.config.get('target_modules')}, "
                f"trained on {self.config.get('base_model_name_or_path')!r})"
            )
        for name, param in peft_model.named_parameters():
            if "lora_" in name:
                param.requires_grad_(trainable)
        if trainable:
            peft_model.train()
        else:
            peft_model.eval()
        return peft_model

    def save(self, directory: str | Path) -> Path:
        """Write ``adapter_config.json`` + ``adapter_model.safetensors`` into ``directory`` (created)."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / CONFIG_NAME).write_text(json.dumps(self.config, indent=2, sort_keys=True))
        save_file(
            {k: v.contiguous() for k, v in self.state_dict.items()},
            str(directory / WEIGHTS_NAME),
            metadata={"format": "pt"},
        )
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> LoraAdapter:
        """Read an adapter folder in peft's format (ours or one written by ``PeftModel.save_pretrained``)."""
        from safetensors.torch import load_file

        directory = Path(directory)
        for name in (CONFIG_NAME, WEIGHTS_NAME):
            if not (directory / name).is_file():
                raise FileNotFoundError(f"LoRA adapter folder {directory} has no {name}")
        config = json.loads((directory / CONFIG_NAME).read_text())
        if str(config.get("peft_type", "LORA")).upper() != "LORA":
            raise ValueError(
                f"{directory / CONFIG_NAME}: peft_type is {config['peft_type']!r}, expected 'LORA'"
            )
        config = _jsonable_config(config)
        config["inference_mode"] = False
        return cls(config=config, state_dict=load_file(str(directory / WEIGHTS_NAME), device="cpu"))

    def __repr__(self) -> str:
        return (
            f"LoraAdapter(r={self.config.get('r')}, alpha={self.config.get('lora_alpha')}, "
            f"targets={self.config.get('target_modules')}, tensors={len(self.state_dict)}, "
            f"params={self.num_parameters})"
        )
