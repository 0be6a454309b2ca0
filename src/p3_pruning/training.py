"""One fine-tuning round: a single pass of LoRA training over the round's selected samples.

Kedro-free. ``train_round(model, tokenizer, samples, adapter=...) -> (adapter, metrics)``. Round 1 creates
a fresh LoRA adapter; round e continues round e−1's weights with a fresh optimizer and schedule (as the
P3 authors do). The caller's base model is left as it was (LoRA layers are unloaded afterwards).

Divergence stops training at the step it happens (:class:`TrainingDiverged`, no adapter returned): a
non-finite loss or gradient norm, a zero gradient under a positive loss (nothing can be learned any
more: activations saturated by a huge step, or no trainable weight reached by the loss), or a loss
that has risen and stayed up: most of the last few steps above ``divergence_factor`` × the first few's
mean. A single step or two high is not divergence: with length-grouped batches the shortest samples
come last, and in a mixed pool a batch of them can be another task's unlearnt one-token answers.
Several such batches in a row can hold the majority, so a rise is confirmed before training stops:
the model's loss on a fixed probe of the round's samples (up to ``PROBE_SAMPLES``, spread over the
round) must also have risen past the factor against the same probe read with the round's starting
weights (kept from before the first step, trainable ones only, and read only when a rise shows);
when it has not, the high steps were hard batches, not a broken model, and training goes on with a
warning.
A diverged adapter would otherwise be saved as a finished round and the damage would surface one
round later, under another cause.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import json
import logging
import math
import tempfile
import time
import warnings
from collections.abc import Sequence

import pandas as pd
import torch
from torch import nn

from p3_pruning.adapters import LoraAdapter
from p3_pruning.chat import DEFAULT_SYSTEM, encode_conversation, encode_pair

log = logging.getLogger(__name__)

IGNORE_INDEX = -100
# Library defaults; a Kedro run passes its own (conf/base/parameters_rounds.yml, training block).
MAX_LENGTH = 512  # tokens per training sequence (prompt + response), longer ones are cut
LORA_DEFAULTS = {
    "r": 16,
    "lora_alpha": 32,
    "lora_dropout": 0.05,
    "target_modules": None,
    "bias": "none",
}
# Training stops when most of the last DIVERGENCE_WINDOW steps' losses exceed DIVERGENCE_FACTOR times
# the mean of the first ones (conf/base/parameters_rounds.yml sets the factor; None: off). A majority,
# not a mean or a single step: SmolLM2-135M on the default task, batch 4, lr 2e-3, moved from step to
# step by up to 11x (0.99 0.54 0.59 0.20 0.56 0.09 0.50 0.11: long and short batches alternate), one
# batch of unlearnt samples in a mixed pool lifts a 4-step mean past 4x on its own (0.31 at the start,
# then 0.41 0.50 4.55 0.49), while a model collapsed to uniform predictions sits at ln(vocab) = 10.8
# nats on every step, ten times its start loss of about 1.
DIVERGENCE_FACTOR = 4.0
DIVERGENCE_WINDOW = 4
# A rise is confirmed on this many of the round's samples (spread over it) before training stops:
# random on 135 rows of the off-task regime met three batches of unlearnt one-token answers in a row
# (0.40 7.90 9.50 8.63 against a start of 0.73) with nothing wrong with the model.
PROBE_SAMPLES = 16
# Parameter-file spellings → peft's LoraConfig names.
_LORA_ALIASES = {"alpha": "lora_alpha", "dropout": "lora_dropout"}


# ----------------------------------------------------------------------------------------------
# LoRA configuration
# ----------------------------------------------------------------------------------------------
def linear_target_modules(model) -> list[str]:
    """Names of all linear layers except the output head (e.g. q,k,v,o,gate,up,down_proj for Llama).

    Short names (last path component) when they cannot catch the head, full module paths otherwise.
    """
    from transformers.pytorch_utils import Conv1D

    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    full, head_names = [], set()
    for name, module in model.named_modules():
        if not isinstance(module, (nn.Linear, Conv1D)):
            continue
        if module is head:
            head_names.add(name.rsplit(".", 1)[-1])
            continue
        full.append(name)
    if not full:
        raise ValueError(f"{type(model).__name__} has no linear layers to put LoRA on")
    short = sorted({n.rsplit(".", 1)[-1] for n in full})
    return sorted(full) if head_names & set(short) else short


def lora_config(model, lora: dict | None = None):
    """A ``peft.LoraConfig`` from a parameters dict.

    Keys: ``r``, ``alpha``/``lora_alpha``, ``dropout``/``lora_dropout``, ``target_modules`` (None →
    every linear layer but the head), plus any other ``LoraConfig`` field; defaults ``LORA_DEFAULTS``.
    """
    from peft import LoraConfig

    opts = dict(LORA_DEFAULTS)
    known = {f.name for f in dataclasses.fields(LoraConfig)}
    for key, value in (lora or {}).items():
        key = _LORA_ALIASES.get(key, key)
        if key not in known:
            raise ValueError(
                f"Unknown LoRA parameter {key!r}; expected r, alpha, dropout, target_modules or a LoraConfig field"
            )
        opts[key] = value
    if not opts["target_modules"]:
        opts["target_modules"] = linear_target_modules(model)
    if int(opts["r"]) < 1:
        raise ValueError(f"LoRA r must be ≥ 1, got {opts['r']}")
    opts["base_model_name_or_path"] = (
        opts.get("base_model_name_or_path") or getattr(model.config, "_name_or_path", None) or None
    )
    return LoraConfig(task_type="CAUSAL_LM", **opts)


# ----------------------------------------------------------------------------------------------
# Data: token ids and labels
# ----------------------------------------------------------------------------------------------
def _check_samples(samples: pd.DataFrame) -> None:
    if not isinstance(samples, pd.DataFrame):
        raise TypeError(f"samples must be a pandas DataFrame, got {type(samples).__name__}")
    missing = [c for c in ("prompt", "response") if c not in samples.columns]
    if missing:
        raise ValueError(
            f"samples table is missing column(s) {missing}; has {list(samples.columns)}"
        )
    if samples.empty:
        raise ValueError("samples table is empty: nothing to train on")
    for col in ("prompt", "response"):
        bad = samples[col].map(lambda v: not isinstance(v, str) or not v)
        if bad.any():
            row = samples[bad].iloc[0]
            raise ValueError(
                f"sample {row.get('sample_id', bad.idxmax())!r} has an empty or non-text {col}"
            )


def build_features(
    tokenizer,
    samples: pd.DataFrame,
    *,
    max_length: int = MAX_LENGTH,
    loss_on: str = "response",
    system: str | None = DEFAULT_SYSTEM,
) -> list[dict]:
    """Token ids and labels per sample, via ``chat.encode_pair`` (``chat.encode_conversation`` for a row
    whose ``messages`` is not null).

    Returns dicts with ``input_ids`` and ``labels`` (lists of length ≤ ``max_length``) and ``sample_id``.
    With ``loss_on="response"`` only assistant tokens are targets: the response (every assistant turn of
    a conversation) and the end-of-turn token after it; system and user tokens get −100.
    ``loss_on="all"`` trains on every token. Sequences are cut at ``max_length``.
    """
    if loss_on not in ("response", "all"):
        raise ValueError(f"loss_on must be 'response' or 'all', got {loss_on!r}")
    if max_length < 2:
        raise ValueError(f"max_length must be ≥ 2, got {max_length}")
    _check_samples(samples)
    ids = _sample_ids(samples)
    conversations = samples["messages"] if "messages" in samples.columns else [None] * len(samples)
    features = []
    for sample_id, prompt, response, messages in zip(
        ids, samples["prompt"], samples["response"], conversations, strict=True
    ):
        if isinstance(messages, str):
            input_ids, _, turns = encode_conversation(
                tokenizer, json.loads(messages), system=system
            )
            labels = [IGNORE_INDEX] * len(input_ids)
            for turn in turns:
                labels[turn.start : turn.end] = input_ids[turn.start : turn.end]
        else:
            input_ids, prompt_len, _ = encode_pair(tokenizer, prompt, response, system=system)
            labels = list(input_ids)
            labels[:prompt_len] = [IGNORE_INDEX] * prompt_len
        if loss_on == "all":
            labels = list(input_ids)
        features.append(
            {
                "sample_id": str(sample_id),
                "input_ids": input_ids[:max_length],
                "labels": labels[:max_length],
                "truncated": len(input_ids) > max_length,
            }
        )
    return features


def n_target_tokens(feature: dict) -> int:
    """Tokens the loss is computed on (labels are shifted by one inside the model)."""
    return sum(1 for t in feature["labels"][1:] if t != IGNORE_INDEX)


class _Features(torch.utils.data.Dataset):
    """``rows``: each item also carries its position (``row``), for the training-pass measurement."""

    def __init__(self, features: Sequence[dict], rows: bool = False):
        self.features = list(features)
        self.rows = rows

    def __len__(self):
        return len(self.features)

    def __getitem__(self, i):
        f = self.features[i]
        item = {"input_ids": f["input_ids"], "labels": f["labels"]}
        if self.rows:
            item["row"] = i
        return item


@dataclasses.dataclass
class PadCollator:
    """Right-pads a batch to its longest sequence. Padding gets label −100 and attention 0, from lengths
    (never from token ids: the pad token is the end-of-turn token here, which is also a target)."""

    pad_token_id: int
    pad_to_multiple_of: int | None = None

    def __call__(self, batch: list[dict]) -> dict[str, torch.Tensor]:
        longest = max(len(b["input_ids"]) for b in batch)
        if self.pad_to_multiple_of:
            longest = math.ceil(longest / self.pad_to_multiple_of) * self.pad_to_multiple_of
        input_ids = torch.full((len(batch), longest), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(batch), longest), IGNORE_INDEX, dtype=torch.long)
        attention = torch.zeros((len(batch), longest), dtype=torch.long)
        for i, b in enumerate(batch):
            n = len(b["input_ids"])
            input_ids[i, :n] = torch.as_tensor(b["input_ids"])
            labels[i, :n] = torch.as_tensor(b["labels"])
            attention[i, :n] = 1
        out = {"input_ids": input_ids, "labels": labels, "attention_mask": attention}
        if "row" in batch[0]:  # dataset positions, read by the training-pass measurement
            out["row"] = torch.tensor([b["row"] for b in batch], dtype=torch.long)
        return out


# ----------------------------------------------------------------------------------------------
# QLoRA
# ----------------------------------------------------------------------------------------------
def qlora_unavailable_reason() -> str | None:
    """Why 4-bit QLoRA cannot run here (``None`` when it can)."""
    if not torch.cuda.is_available():
        return "4-bit QLoRA needs a CUDA GPU (bitsandbytes 4-bit kernels); none is visible"
    if importlib.util.find_spec("bitsandbytes") is None:
        return "4-bit QLoRA needs the `bitsandbytes` package (pip install bitsandbytes)"
    return None


def _load_4bit(model, tmpdir: str):
    """A 4-bit NF4 copy of ``model`` on the GPU, prepared for k-bit training."""
    from peft import prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    compute = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    quant = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute,
    )
    model.save_pretrained(
        tmpdir, safe_serialization=True
    )  # the weights the caller holds, whatever their origin
    qmodel = AutoModelForCausalLM.from_pretrained(
        tmpdir,
        quantization_config=quant,
        dtype=compute,
        device_map={"": torch.cuda.current_device()},
    )
    return prepare_model_for_kbit_training(qmodel, use_gradient_checkpointing=False)


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------
class TrainingDiverged(RuntimeError):
    """Training diverged; raised at the optimizer step where it showed, before any adapter is returned."""


def divergence(
    losses: Sequence[float],
    grad_norm: float | None,
    factor: float | None,
    window: int = DIVERGENCE_WINDOW,
) -> str | None:
    """Why the latest optimizer step means training diverged, or None when it did not.

    losses: every step's loss so far, the latest last; grad_norm: the latest step's gradient norm
    (None when not clipped). factor: the allowed ratio of a step's loss to the mean loss of the first
    ``window`` steps (None: no ratio check; checked once more than ``window`` steps ran); the loss has
    diverged when most of the last ``window`` steps are above it (a rise that stays), not when one or
    two batches are: those are batches of samples the model has not learnt.

    >>> divergence([2.0, float("nan")], 1.0, 4.0)
    'the loss is nan'
    >>> divergence([1.0, 0.5, 0.6, 0.2, 0.5, 0.1], 0.3, 4.0) is None
    True
    >>> divergence([1.0, 1.0, 1.0, 1.0, 9.0, 9.0, 9.0, 9.0], 0.3, 4.0)
    '4 of the last 4 steps lost more than 4 times the mean of the first 4 (1; losses 9, 9, 9, 9; training.divergence_factor = 4)'
    >>> divergence([1.0, 1.0, 1.0, 1.0, 9.0, 0.5, 0.1, 9.0], 0.3, 4.0) is None
    True
    """
    loss = float(losses[-1])
    if not math.isfinite(loss):
        return f"the loss is {loss}"
    if grad_norm is not None:
        if not math.isfinite(grad_norm):
            return f"the gradient norm is {grad_norm} (loss {loss:.4g})"
        if grad_norm == 0.0 and loss > 0.0:
            return (
                f"the gradient is exactly zero while the loss is {loss:.4g}: the model can no longer "
                "learn (activations saturated by too large a step, or the loss reaches no trainable "
                "weight)"
            )
    if factor is not None and len(losses) > window:
        start = sum(losses[:window]) / window
        recent = [float(x) for x in losses[-window:]]
        high = sum(x > factor * start for x in recent)
        if start > 0 and 2 * high > window:
            shown = ", ".join(f"{x:.4g}" for x in recent)
            return (
                f"{high} of the last {window} steps lost more than {factor:g} times the mean of the "
                f"first {window} ({start:.4g}; losses {shown}; training.divergence_factor = "
                f"{factor:g})"
            )
    return None


def probe_batches(features: Sequence[dict], pad_token_id: int, batch_size: int) -> list[dict]:
    """Up to :data:`PROBE_SAMPLES` of ``features``, evenly spread over them, collated in batches of
    ``batch_size``: the fixed samples a suspected divergence is confirmed on."""
    n = min(PROBE_SAMPLES, len(features))
    picks = sorted({round(i * (len(features) - 1) / max(n - 1, 1)) for i in range(n)})
    collate = PadCollator(pad_token_id)
    chosen = [features[i] for i in picks]
    return [collate(chosen[i : i + batch_size]) for i in range(0, len(chosen), batch_size)]


def probe_loss(model, batches: Sequence[dict]) -> float:
    """The model's mean loss per target token over ``batches`` (no gradient, dropout off; the
    model's train/eval mode is put back)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total, tokens = 0.0, 0
    try:
        with torch.no_grad():
            for batch in batches:
                n = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
                out = model(**{k: v.to(device) for k, v in batch.items() if k != "row"})
                total += float(out.loss) * n
                tokens += n
    finally:
        model.train(was_training)
    return total / max(tokens, 1)


def _divergence_guard(factor: float | None, label: str | None, probe: Sequence[dict] = ()):
    """A callback that raises :class:`TrainingDiverged` at the first diverged optimizer step.

    ``probe`` (:func:`probe_batches`): when given, a rise of the step losses stops training only if
    the model's loss on it has risen past ``factor`` against the round's starting weights too."""
    from transformers import TrainerCallback

    class DivergenceGuard(TrainerCallback):
        def __init__(self):
            self.losses: list[float] = []
            self.start: dict[str, torch.Tensor] | None = None  # trainable weights before step 1
            self.reference: float | None = None  # the probe's loss with them, read when needed
            self.cleared_until = 0  # steps a probe found healthy are not probed again

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            if probe and factor is not None and model is not None:
                self.start = {
                    name: p.detach().clone()
                    for name, p in model.named_parameters()
                    if p.requires_grad
                }

        def _starting_loss(self, model) -> float:
            """The probe's loss with the starting weights (swapped in and back, bit for bit)."""
            if self.reference is None:
                params = dict(model.named_parameters())
                now = {name: params[name].detach().clone() for name in self.start}
                with torch.no_grad():
                    for name, weights in self.start.items():
                        params[name].copy_(weights)
                    try:
                        self.reference = probe_loss(model, probe)
                    finally:
                        for name, weights in now.items():
                            params[name].copy_(weights)
            return self.reference

        def on_log(self, args, state, control, logs=None, model=None, **kwargs):
            if not logs or "loss" not in logs:
                return
            self.losses.append(float(logs["loss"]))
            grad_norm = logs.get("grad_norm")
            why = divergence(self.losses, None if grad_norm is None else float(grad_norm), None)
            if why is None and state.global_step > self.cleared_until:
                why = divergence(self.losses, None, factor)
                if why is not None and self.start is not None and model is not None:
                    now = probe_loss(model, probe)
                    why = self._confirmed(why, self._starting_loss(model), now, state.global_step)
            if why is not None:
                raise TrainingDiverged(
                    f"{label or 'train_round'}: training diverged at step {state.global_step} of "
                    f"{state.max_steps}: {why}. Nothing was saved for this round; lower "
                    "training.learning_rate (or raise training.warmup_ratio) and rerun it"
                )

        def _confirmed(self, why: str, start: float, now: float, step: int) -> str | None:
            n = sum(len(b["input_ids"]) for b in probe)
            if start > 0 and now > factor * start:
                return (
                    f"{why}; on {n} fixed samples of the round the loss rose from "
                    f"{start:.4g} to {now:.4g}"
                )
            self.cleared_until = step + DIVERGENCE_WINDOW - 1
            log.warning(
                "%s, step %d: %s, but on %d fixed samples of the round the loss is %.4g against "
                "%.4g before the first step: batches of samples the model has not learnt, not "
                "divergence; training goes on",
                label or "train_round",
                step,
                why,
                n,
                now,
                start,
            )
            return None

    return DivergenceGuard()


def _check_finite(adapter: LoraAdapter, label: str | None) -> None:
    """The trained weights must be finite: a last guard behind the per-step checks."""
    bad = [name for name, t in adapter.state_dict.items() if not torch.isfinite(t).all()]
    if bad:
        raise TrainingDiverged(
            f"{label or 'train_round'}: {len(bad)} of {len(adapter.state_dict)} adapter tensors "
            f"hold non-finite values after training (e.g. {bad[0]}); nothing was saved for this "
            "round; lower training.learning_rate and rerun it"
        )


def _trainer_callbacks(progress: bool):
    from transformers import TrainerCallback

    class LossLog(TrainerCallback):
        """Collects the per-step loss and shows it on the progress bar instead of printing dicts."""

        def __init__(self):
            self.losses: list[float] = []
            self.bar = None

        def on_train_begin(self, args, state, control, **kwargs):
            if progress:
                from tqdm.auto import tqdm

                self.bar = tqdm(total=state.max_steps, desc="train_round", unit="step")

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                self.losses.append(float(logs["loss"]))
                if self.bar is not None:
                    self.bar.set_postfix(loss=f"{logs['loss']:.4f}")

        def on_step_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.update(state.global_step - self.bar.n)

        def on_train_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.close()

    return LossLog()


def train_round(
    model,
    tokenizer,
    samples: pd.DataFrame,
    *,
    adapter: LoraAdapter | None = None,
    lora: dict | None = None,
    seed: int = 0,
    learning_rate: float = 2e-3,
    epochs: int = 1,
    batch_size: int = 4,
    grad_accum: int = 1,
    max_length: int = MAX_LENGTH,
    loss_on: str = "response",
    lr_scheduler: str = "cosine",
    warmup_ratio: float = 0.1,
    weight_decay: float = 0.0,
    max_grad_norm: float = 1.0,
    group_by_length: bool = True,
    gradient_checkpointing: bool = False,
    qlora: bool = False,
    system: str | None = DEFAULT_SYSTEM,
    output_dir: str | None = None,
    progress: bool = True,
    divergence_factor: float | None = DIVERGENCE_FACTOR,
    label: str | None = None,
    measure: dict | None = None,
) -> tuple[LoraAdapter, dict]:
    """Train LoRA for ``epochs`` pass(es) over ``samples`` with the HF ``Trainer``; return ``(adapter, metrics)``.

    model: a plain base model (``models.load_model``), not a ``PeftModel``. samples: the round's selected
    rows of the samples table (``prompt``, ``response``, ``sample_id``). adapter: the previous round's
    adapter to continue (``None`` → a fresh LoRA from ``lora``: r, alpha, dropout, target_modules).
    One optimizer step = ``batch_size × grad_accum`` samples; seeded shuffle; length-grouped batches when
    ``group_by_length``; bf16 autocast on CUDA; ``qlora`` trains on a 4-bit copy when CUDA and bitsandbytes
    are present (a warning and plain LoRA otherwise). Nothing is checkpointed. Divergence raises
    :class:`TrainingDiverged` at the step it shows (see the module docstring; ``divergence_factor``
    None turns the loss-ratio check off); ``label`` (e.g. ``"p3 round 2"``) names the run in it.

    metrics: ``train_loss`` (mean), ``loss_curve`` (loss per optimizer step), ``n_samples``, ``n_tokens``
    (target tokens trained on, all epochs), ``n_truncated``, ``n_skipped`` (no target token left after
    truncation), ``steps``, ``seconds``.

    measure: the scorer's options (``segmenter``, ``pattern``, ``max_length``; a dict, ``{}`` for
    the defaults) to read every trained sample's action probabilities and difficulty off the
    training forward pass (``p3_pruning.train_scores``: no extra forward; dropout and in-epoch
    updates explained there). ``metrics["train_scores"]`` is then that table (a DataFrame, one
    row per trained sample). ``learning_rate`` 0 trains nothing and only measures.
    """
    _check_training_args(
        model,
        epochs=epochs,
        batch_size=batch_size,
        grad_accum=grad_accum,
        warmup_ratio=warmup_ratio,
        learning_rate=learning_rate,
        divergence_factor=divergence_factor,
    )
    kept, n_truncated, n_skipped = _trainable_features(
        tokenizer, samples, max_length=max_length, loss_on=loss_on, system=system
    )
    recorder = None
    if measure is not None:
        from p3_pruning.train_scores import TrainPassRecorder

        position = {str(sid): i for i, sid in enumerate(_sample_ids(samples))}
        rows = samples.iloc[[position[f["sample_id"]] for f in kept]]
        recorder = TrainPassRecorder(rows, tokenizer, system=system, **measure)
    run, trained = _train_adapter(
        model,
        tokenizer,
        kept,
        train_pass=recorder,
        adapter=adapter,
        lora=lora,
        qlora=qlora,
        output_dir=output_dir,
        progress=progress,
        guard=_divergence_guard(
            divergence_factor,
            label,
            probe=probe_batches(kept, tokenizer.pad_token_id, batch_size)
            if divergence_factor is not None
            else (),
        ),
        num_train_epochs=epochs,
        per_device_train_batch_size=batch_size,
        gradient_accumulation_steps=grad_accum,
        learning_rate=learning_rate,
        lr_scheduler_type=lr_scheduler,
        warmup_steps=warmup_ratio,  # a float < 1 is a fraction of the total steps
        weight_decay=weight_decay,
        max_grad_norm=max_grad_norm,
        train_sampling_strategy="group_by_length" if group_by_length else "random",
        activation_checkpointing=gradient_checkpointing,
        seed=seed,
        data_seed=seed,
    )
    _check_finite(trained, label)
    metrics = _train_metrics(
        run,
        trained,
        kept,
        epochs=epochs,
        n_truncated=n_truncated,
        n_skipped=n_skipped,
        learning_rate=learning_rate,
    )
    if recorder is not None:
        metrics["train_scores"] = recorder.table()
    return trained, metrics


def _sample_ids(samples: pd.DataFrame) -> pd.Series:
    """The ids ``build_features`` gives the rows: ``sample_id``, else the index as text."""
    if "sample_id" in samples.columns:
        return samples["sample_id"]
    return pd.Series(samples.index.astype(str))


def _check_training_args(
    model, *, epochs, batch_size, grad_accum, warmup_ratio, learning_rate, divergence_factor=None
) -> None:
    from peft import PeftModel

    if isinstance(model, PeftModel):
        raise TypeError(
            "train_round needs the plain base model; pass the previous adapter as `adapter=`"
        )
    for name, value, low in (
        ("epochs", epochs, 1),
        ("batch_size", batch_size, 1),
        ("grad_accum", grad_accum, 1),
    ):
        if int(value) < low:
            raise ValueError(f"{name} must be ≥ {low}, got {value}")
    if not 0.0 <= warmup_ratio < 1.0:
        raise ValueError(f"warmup_ratio must be in [0, 1), got {warmup_ratio}")
    if not learning_rate >= 0:  # 0: a measuring pass (train_scores) that changes nothing
        raise ValueError(f"learning_rate must be ≥ 0, got {learning_rate}")
    if divergence_factor is not None and not divergence_factor > 1.0:
        raise ValueError(f"divergence_factor must be > 1 (or None: off), got {divergence_factor}")


def _trainable_features(tokenizer, samples, *, max_length, loss_on, system):
    """``(kept, n_truncated, n_skipped)``: the features with at least one target token left."""
    features = build_features(
        tokenizer, samples, max_length=max_length, loss_on=loss_on, system=system
    )
    n_truncated = sum(f["truncated"] for f in features)
    kept = [f for f in features if n_target_tokens(f) > 0]
    skipped = [f["sample_id"] for f in features if n_target_tokens(f) == 0]
    if n_truncated:
        log.warning(
            "%d of %d samples were cut at max_length=%d", n_truncated, len(features), max_length
        )
    if skipped:
        log.warning(
            "%d samples have no response token left within max_length=%d and are not trained on: %s",
            len(skipped),
            max_length,
            skipped[:10],
        )
    if not kept:
        raise ValueError(
            f"No sample has a response token within max_length={max_length}; raise max_length"
        )
    return kept, n_truncated, len(skipped)


@contextlib.contextmanager
def _base_restored(model):
    """Puts back what training touches on the caller's base model: trainable flags, use_cache, mode."""
    was_training = model.training
    requires_grad = {n: p.requires_grad for n, p in model.named_parameters()}
    use_cache = getattr(model.config, "use_cache", None)
    try:
        yield
    finally:
        for n, p in model.named_parameters():
            p.requires_grad_(requires_grad.get(n, p.requires_grad))
        if use_cache is not None:
            model.config.use_cache = use_cache
        model.train(was_training)


def _training_base(model, qlora: bool, path: str):
    """The model LoRA goes on: ``model`` itself, or its 4-bit copy when ``qlora`` can run here."""
    if not qlora:
        return model
    reason = qlora_unavailable_reason()
    if reason:
        # stacklevel: _training_base ← _train_adapter ← train_round ← its caller
        warnings.warn(f"qlora=True ignored: {reason}. Training plain LoRA instead.", stacklevel=4)
        log.warning("qlora=True ignored: %s. Training plain LoRA instead.", reason)
        return model
    return _load_4bit(model, path)


def _peft_model(train_model, model, adapter: LoraAdapter | None, lora: dict | None):
    """A fresh LoRA from ``lora`` (round 1) or ``adapter`` continued, trainable, on ``train_model``."""
    from peft import get_peft_model

    if adapter is None:
        return get_peft_model(train_model, lora_config(model, lora))
    if lora:
        log.info("`lora` is ignored when continuing an adapter (its own config is kept)")
    return adapter.apply(train_model, trainable=True)


@dataclasses.dataclass(frozen=True)
class _Run:
    loss: float
    losses: list[float]
    steps: int
    seconds: float


def _train_adapter(
    model,
    tokenizer,
    kept,
    *,
    adapter,
    lora,
    qlora,
    output_dir,
    progress,
    guard,
    train_pass=None,
    **trainer_options,
) -> tuple[_Run, LoraAdapter]:
    """Fit the LoRA (``adapter`` continued, else a fresh one from ``lora``) on ``kept`` and take it
    off the caller's base model again; ``trainer_options`` are ``TrainingArguments`` fields."""
    from transformers import set_seed

    use_cuda = next(model.parameters()).device.type == "cuda"
    with _base_restored(model), tempfile.TemporaryDirectory(prefix="p3-train-") as tmp:
        train_model = _training_base(model, qlora, f"{tmp}/base-4bit")
        set_seed(trainer_options["seed"])  # LoRA init is drawn from the global RNG
        peft_model = _peft_model(train_model, model, adapter, lora)
        try:
            if trainer_options["activation_checkpointing"]:
                peft_model.enable_input_require_grads()
            run = _fit(
                peft_model,
                tokenizer,
                kept,
                output_dir=output_dir or f"{tmp}/trainer",
                use_cuda=use_cuda,
                progress=progress,
                guard=guard,
                train_pass=train_pass,
                **trainer_options,
            )
            trained = LoraAdapter.from_peft(peft_model)
            trained.config["base_model_name_or_path"] = (
                getattr(model.config, "_name_or_path", None) or None
            )
        finally:
            peft_model.unload()  # takes the LoRA layers out of the caller's base model
            if train_model is not model:
                del train_model
                torch.cuda.empty_cache()
    return run, trained


def _fit(
    peft_model,
    tokenizer,
    features,
    *,
    output_dir,
    use_cuda,
    progress,
    guard,
    train_pass=None,
    **options,
) -> _Run:
    """One ``Trainer.train()`` over ``features``; ``options`` are ``TrainingArguments`` fields.
    ``train_pass``: a ``train_scores.TrainPassRecorder`` over ``features``' rows, fed by the
    training forward passes."""
    from transformers import Trainer, TrainingArguments
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    bf16 = use_cuda and torch.cuda.is_bf16_supported()
    args = TrainingArguments(
        output_dir=output_dir,
        **options,
        bf16=bf16,
        fp16=use_cuda and not bf16,
        use_cpu=not use_cuda,
        logging_steps=1,
        logging_nan_inf_filter=False,  # a nan step must show as nan, not as the window's mean
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        remove_unused_columns=False,
        dataloader_num_workers=0,
    )
    loss_log = _trainer_callbacks(progress)
    trainer_cls = Trainer
    if train_pass is not None:
        from p3_pruning.train_scores import measuring_trainer

        trainer_cls = measuring_trainer(Trainer)
    trainer = trainer_cls(
        model=peft_model,
        args=args,
        train_dataset=_Features(features, rows=train_pass is not None),
        data_collator=PadCollator(
            tokenizer.pad_token_id, pad_to_multiple_of=8 if use_cuda else None
        ),
        callbacks=[loss_log, guard],
    )
    for cb in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(cb)
    if train_pass is not None:
        trainer.train_pass = train_pass
    start = time.perf_counter()
    result = trainer.train()
    seconds = time.perf_counter() - start
    return _Run(
        float(result.training_loss), list(loss_log.losses), int(trainer.state.global_step), seconds
    )


def _train_metrics(
    run: _Run, trained: LoraAdapter, kept, *, epochs, n_truncated, n_skipped, learning_rate
) -> dict:
    log.info(
        "train_round: %d samples, %d steps, loss %.4f, %.1f s",
        len(kept),
        run.steps,
        run.loss,
        run.seconds,
    )
    return {
        "train_loss": run.loss,
        "loss_curve": run.losses,
        "n_samples": len(kept),
        "n_tokens": int(sum(n_target_tokens(f) for f in kept) * epochs),
        # every token the model read (prompt included): what compute accounting counts
        "n_input_tokens": int(sum(len(f["input_ids"]) for f in kept) * epochs),
        "n_truncated": int(n_truncated),
        "n_skipped": n_skipped,
        "steps": run.steps,
        "seconds": float(run.seconds),
        "learning_rate": float(learning_rate),
        "lora": {
            k: trained.config.get(k) for k in ("r", "lora_alpha", "lora_dropout", "target_modules")
        },
    }


__all__ = [
    "DIVERGENCE_FACTOR",
    "IGNORE_INDEX",
    "TrainingDiverged",
    "PadCollator",
    "build_features",
    "divergence",
    "linear_target_modules",
    "lora_config",
    "n_target_tokens",
    "probe_batches",
    "probe_loss",
    "qlora_unavailable_reason",
    "train_round",
]
