"""LoraAdapter (save/load/apply) and the versioned Kedro dataset for adapter folders."""

from __future__ import annotations

import pickle
import time

import pytest
import torch
from kedro.io import DataCatalog
from kedro.io.core import DatasetError, Version

from p3_pruning.adapters import CONFIG_NAME, WEIGHTS_NAME, LoraAdapter
from p3_pruning.datasets.lora_adapter import LoraAdapterDataset
from p3_pruning.models import load_model, tiny_model
from p3_pruning.training import linear_target_modules, lora_config

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def tiny():
    return _fresh_base(), _tokenizer()


def _fresh_base():
    """The same weights as ``load_model("tiny-random", seed=0)``, without reloading the tokenizer."""
    return tiny_model(_tokenizer(), seed=0).eval()


_TOKENIZER = []


def _tokenizer():
    if not _TOKENIZER:
        _TOKENIZER.append(load_model("tiny-random")[1])
    return _TOKENIZER[0]


def _random_adapter(seed: int, r: int = 4) -> LoraAdapter:
    """An adapter with random non-zero A and B (a fresh LoRA has B = 0 and changes nothing)."""
    from peft import get_peft_model

    base = _fresh_base()
    peft_model = get_peft_model(base, lora_config(base, {"r": r, "alpha": 8, "dropout": 0.0}))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    return LoraAdapter.from_peft(peft_model)


def _logits(model, tokenizer) -> torch.Tensor:
    ids = tokenizer("Answer: 12 + 30 = 42", return_tensors="pt", add_special_tokens=False)[
        "input_ids"
    ]
    with torch.inference_mode():
        return model(input_ids=ids).logits


def test_linear_targets_are_every_projection_but_the_head(tiny):
    model, _ = tiny
    assert linear_target_modules(model) == sorted(
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )


def test_unknown_lora_key_is_named(tiny):
    with pytest.raises(ValueError, match="rank"):
        lora_config(tiny[0], {"rank": 8})


def test_adapter_changes_logits_and_save_load_reproduces_them(tiny, tmp_path):
    model, tokenizer = tiny
    adapter = _random_adapter(1)
    plain = _logits(model, tokenizer)
    applied = adapter.apply(_fresh_base())
    with_adapter = _logits(applied, tokenizer)
    assert (with_adapter - plain).abs().max() > 1e-3  # the adapter does something

    adapter.save(tmp_path / "a")
    assert (tmp_path / "a" / CONFIG_NAME).is_file() and (tmp_path / "a" / WEIGHTS_NAME).is_file()
    loaded = LoraAdapter.load(tmp_path / "a")
    assert loaded.state_dict.keys() == adapter.state_dict.keys()
    for key, value in adapter.state_dict.items():
        assert torch.equal(loaded.state_dict[key], value)
    assert torch.equal(_logits(loaded.apply(_fresh_base()), tokenizer), with_adapter)

    # peft itself reads the folder and gives the same model.
    from peft import PeftModel

    by_peft = PeftModel.from_pretrained(_fresh_base(), str(tmp_path / "a"))
    assert torch.allclose(_logits(by_peft, tokenizer), with_adapter, atol=1e-6)


def test_apply_trainable_flag_and_unload_restores_base(tiny):
    model, tokenizer = tiny
    adapter = _random_adapter(2)
    base = _fresh_base()
    before = _logits(base, tokenizer)
    frozen = adapter.apply(base, trainable=False)
    assert not frozen.training
    assert not any(p.requires_grad for n, p in frozen.named_parameters() if "lora_" in n)
    frozen.unload()
    assert torch.equal(_logits(base, tokenizer), before)
    trainable = adapter.apply(base, trainable=True)
    lora = [p for n, p in trainable.named_parameters() if "lora_" in n]
    assert lora and all(p.requires_grad for p in lora)
    # The adapter's tensors are copies: training the wrapped model cannot change the adapter object.
    with torch.no_grad():
        lora[0].add_(1.0)
    assert not any(
        torch.equal(lora[0].detach(), t)
        for t in adapter.state_dict.values()
        if t.shape == lora[0].shape
    )


def test_adapter_for_another_architecture_is_rejected(tiny):
    adapter = _random_adapter(3)
    narrower = tiny_model(tiny[1], hidden_size=32)  # same module names, other shapes
    with pytest.raises((ValueError, RuntimeError)):
        adapter.apply(narrower)
    renamed = LoraAdapter(
        config=adapter.config,
        state_dict={k.replace("layers.0", "layers.7"): v for k, v in adapter.state_dict.items()},
    )
    with pytest.raises(ValueError, match="does not fit"):
        renamed.apply(_fresh_base())


def test_adapter_pickles(tiny):
    adapter = _random_adapter(4)
    clone = pickle.loads(pickle.dumps(adapter))
    assert clone.config == adapter.config
    assert all(torch.equal(clone.state_dict[k], v) for k, v in adapter.state_dict.items())


def test_load_names_missing_file(tmp_path):
    (tmp_path / "x").mkdir()
    with pytest.raises(FileNotFoundError, match=CONFIG_NAME):
        LoraAdapter.load(tmp_path / "x")


# ---------------------------------------------------------------------------------------------
# Kedro dataset
# ---------------------------------------------------------------------------------------------
def _same(a: LoraAdapter, b: LoraAdapter) -> bool:
    return a.state_dict.keys() == b.state_dict.keys() and all(
        torch.equal(a.state_dict[k], b.state_dict[k]) for k in a.state_dict
    )


def test_dataset_unversioned_roundtrip(tmp_path):
    ds = LoraAdapterDataset(filepath=str(tmp_path / "adapter"))
    assert not ds.exists()
    first, second = _random_adapter(5), _random_adapter(6)
    ds.save(first)
    assert ds.exists()
    assert (tmp_path / "adapter" / WEIGHTS_NAME).is_file()
    assert _same(ds.load(), first)
    ds.save(second)  # unversioned: overwrites
    assert _same(ds.load(), second) and not _same(ds.load(), first)
    assert "adapter" in str(ds._describe()["filepath"])


def test_dataset_versioned_two_saves_two_versions_latest_loaded(tmp_path):
    ds = LoraAdapterDataset(filepath=str(tmp_path / "adapter"), version=Version(None, None))
    assert not ds.exists()
    first, second = _random_adapter(7), _random_adapter(8)
    ds.save(first)
    assert ds.exists() and _same(ds.load(), first)
    time.sleep(0.01)  # versions are millisecond timestamps
    ds.save(second)
    versions = sorted(p.name for p in (tmp_path / "adapter").iterdir())
    assert len(versions) == 2
    # Every version is a peft folder: <filepath>/<version>/adapter/{config,weights}
    for v in versions:
        assert (tmp_path / "adapter" / v / "adapter" / WEIGHTS_NAME).is_file()
    assert _same(
        LoraAdapterDataset(filepath=str(tmp_path / "adapter"), version=Version(None, None)).load(),
        second,
    )
    pinned = LoraAdapterDataset(
        filepath=str(tmp_path / "adapter"), version=Version(versions[0], None)
    )
    assert _same(pinned.load(), first)


def test_dataset_rejects_other_objects_and_reports_missing(tmp_path):
    ds = LoraAdapterDataset(filepath=str(tmp_path / "adapter"))
    with pytest.raises(DatasetError, match="LoraAdapter"):
        ds.save({"not": "an adapter"})
    with pytest.raises(DatasetError):
        ds.load()


def test_dataset_from_catalog_config(tmp_path):
    catalog = DataCatalog.from_config(
        {
            "p3.round_1.adapter": {
                "type": "p3_pruning.datasets.lora_adapter.LoraAdapterDataset",
                "filepath": str(tmp_path / "p3" / "round_1" / "adapter"),
                "versioned": True,
            }
        }
    )
    adapter = _random_adapter(9)
    catalog.save("p3.round_1.adapter", adapter)
    assert _same(catalog.load("p3.round_1.adapter"), adapter)


def test_policy_model_merges_the_adapter_for_inference_nodes():
    """Forward-only nodes get a plain model with the adapter folded in: same logits as through peft."""
    from peft import PeftModel

    from p3_pruning.models import policy_model

    adapter = _random_adapter(seed=3)
    params = {"name_or_path": "tiny-random", "seed": 0}
    unmerged, tokenizer = policy_model(params, adapter)
    merged, _ = policy_model(params, adapter, merge=True)
    base, _ = policy_model(params)
    assert isinstance(unmerged, PeftModel) and not isinstance(merged, PeftModel)
    expected = _logits(unmerged, tokenizer)
    assert not torch.allclose(expected, _logits(base, tokenizer), atol=1e-3)  # the adapter matters
    torch.testing.assert_close(_logits(merged, tokenizer), expected, atol=1e-5, rtol=1e-5)
    assert not merged.training
