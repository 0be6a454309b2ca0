"""Compute accounting: parameter counts, and tokens → estimated FLOPs per stage of a round.

Kedro-free. The estimates follow the usual dense-transformer rule (Kaplan et al. 2020, "Scaling Laws
for Neural Language Models", §2.1): a forward pass costs ≈ 2·P FLOPs per token (one multiply and one
add per weight), a backward pass ≈ 4·P (2·P for the gradient with respect to the activations, 2·P
for the gradient with respect to the weights), so full fine-tuning costs ≈ 6·P per token.

LoRA (what we count). The base weights W are frozen and the adapter adds B·A (A: r×in, B: out×r,
P_lora weights in all) beside them. Per token:

- forward through W and through the adapter: 2·P + 2·P_lora;
- backward, activation gradients: they must still flow through every frozen W down to the first
  adapted layer, 2·P, and through the adapter, 2·P_lora;
- backward, weight gradients: only for the adapter, 2·P_lora (none for W: that is LoRA's saving).

    training FLOPs per token ≈ 4·P + 6·P_lora          (full fine-tuning: 6·P)

With gradient checkpointing the forward is run twice: + 2·(P + P_lora). Scoring, the cheap
evaluation and generation run forward only, with the adapter merged into the weights (the round
nodes merge it), so they cost 2·P per token; a generated token costs one forward step (KV cache), a
prompt token one prefill step, so generation costs 2·P per (prompt + generated) token.

Neglected: attention over the context (2·n_layer·n_ctx·d_model per token forward; ~2.5 % of 2·P for
SmolLM2-135M at 200 tokens), padding inside batches, norms and softmaxes, the DPP (O(k·n·d) on
embeddings, seconds on a CPU) and the optimizer step (O(P_lora) per step, not per token).

Which P: ``count_parameters`` counts every distinct weight tensor once (tied input/output embeddings
once). ``matmul`` leaves out an input embedding table that is not shared with the output head (a
lookup, no multiply); pass it as ``params`` for the closest estimate. For tied models (SmolLM2)
``matmul == params``: the head's multiply uses the shared table.

Scoring, rescored and reused (``scoring.refresh: incremental``): ``score`` counts the tokens the
round's scorer read (the rescored samples); ``score_reused`` the tokens of the samples whose value
was reused (from the training pass or an earlier scoring), i.e. what a full rescoring would have
paid on top. Reused FLOPs are reported beside the others and never added to ``total_flops``.

Tokens: everything the model reads, prompt included (not only the tokens a loss is taken on).
:func:`round_compute` turns a round's summary record (the keys in ``TOKEN_KEYS``) into FLOPs.
"""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Iterable, Mapping

log = logging.getLogger(__name__)

STAGES = ("score", "train", "train_full", "eval", "generation")  # stage_flops rules

# Keys of a round's summary record (or a final evaluation's metrics) that hold the tokens a stage
# read. The first key of each tuple that is present is used; a stage's tokens may be a sum of keys
# (eval: the NLL pass plus the difficulty pass). ``FALLBACK_KEYS`` hold counts that leave the prompt
# out (target tokens only): used, with a warning, when the exact keys are missing.
TOKEN_KEYS = {
    "score": ("score_tokens",),
    "score_reused": ("score_reused_tokens",),  # not read: what a full rescoring would add
    "train": ("train_n_input_tokens",),
    "eval": ("eval_n_input_tokens", "eval_score_tokens"),
    "generation": ("generation_prompt_tokens", "generation_new_tokens"),
}
FALLBACK_KEYS = {"train": ("train_n_tokens",), "eval": ("eval_n_tokens",)}
REUSED = "score_reused"  # an incremental refresh's reused scores: reported, never in the totals
TOKEN_STAGES = tuple(s for s in TOKEN_KEYS if s != REUSED)  # stages that read tokens, in run order
SECONDS_KEYS = {
    "score": "score_seconds",
    "threshold": "threshold_seconds",
    "select": "select_seconds",
    "train": "train_seconds",
    "eval": "eval_seconds",
    "generation": "generation_seconds",
}


def count_parameters(model, adapter=None) -> dict[str, int]:
    """Parameter counts of a (peft or plain) model, and of a detached LoRA adapter if given.

    Returns ``params`` (base weights: every distinct tensor outside LoRA modules, tied tensors once),
    ``matmul`` (``params`` less an input embedding table not tied to the output head) and
    ``trainable`` (LoRA weights: tensors named ``lora_*`` inside ``model`` plus the tensors of
    ``adapter``, a :class:`p3_pruning.adapters.LoraAdapter`; 0 for a plain model and no adapter).
    """
    params = trainable = 0
    for name, tensor in model.named_parameters():  # deduplicates tied tensors
        if "lora_" in name:
            trainable += tensor.numel()
        else:
            params += tensor.numel()
    if adapter is not None:
        trainable += sum(t.numel() for t in adapter.state_dict.values())
    lookup = 0
    get_in = getattr(model, "get_input_embeddings", None)
    get_out = getattr(model, "get_output_embeddings", None)
    emb = get_in() if get_in else None
    head = get_out() if get_out else None
    if emb is not None and getattr(emb, "weight", None) is not None:
        tied = head is not None and getattr(head, "weight", None) is emb.weight
        if not tied:
            lookup = emb.weight.numel()
    return {"params": int(params), "matmul": int(params - lookup), "trainable": int(trainable)}


def stage_flops(
    stage: str,
    tokens: float,
    params: float,
    trainable: float = 0,
    *,
    checkpointing: bool = False,
) -> float:
    """Estimated FLOPs of ``stage`` over ``tokens`` tokens (see the module doc for the reasoning).

    stage: ``score``, ``eval``, ``generation`` (forward only: 2·(P + P_lora), pass ``trainable=0``
    when the adapter is merged), ``train`` (LoRA: 4·P + 6·P_lora) or ``train_full`` (6·P, every
    weight trained; ``trainable`` unused). ``checkpointing`` adds the recomputed forward to the
    training stages.
    """
    if stage not in STAGES:
        raise ValueError(f"unknown compute stage {stage!r}; expected one of {STAGES}")
    for name, value in (("tokens", tokens), ("params", params), ("trainable", trainable)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value >= 0:
            raise ValueError(f"{name} must be a number >= 0, got {value!r}")
    forward = 2.0 * (params + trainable)
    if stage in ("score", "eval", "generation"):
        per_token = forward
    elif stage == "train":
        per_token = 4.0 * params + 6.0 * trainable
    else:  # train_full
        forward = 2.0 * params
        per_token = 6.0 * params
    if checkpointing and stage in ("train", "train_full"):
        per_token += forward
    return float(per_token * tokens)


def stage_tokens(info: Mapping, stage: str) -> float:
    """Tokens the model read in ``stage`` (``score``, ``train``, ``eval``, ``generation``) per
    ``TOKEN_KEYS``; 0 when the record has none of its keys (the stage did not run)."""
    if stage not in TOKEN_KEYS:
        raise ValueError(f"unknown token stage {stage!r}; expected one of {tuple(TOKEN_KEYS)}")
    present = [k for k in TOKEN_KEYS[stage] if _number(info.get(k)) is not None]
    if present:
        return float(sum(_number(info[k]) for k in present))
    fallback = [k for k in FALLBACK_KEYS.get(stage, ()) if _number(info.get(k)) is not None]
    if fallback:
        log.warning(
            "%s tokens: no %s in the record; using %s (target tokens only: an undercount)",
            stage,
            " / ".join(TOKEN_KEYS[stage]),
            fallback[0],
        )
        return float(_number(info[fallback[0]]))
    return 0.0


def round_compute(
    info: Mapping,
    params: int,
    trainable: int,
    *,
    full_finetune: bool = False,
    checkpointing: bool = False,
) -> dict[str, float]:
    """Tokens, FLOPs and wall seconds of one round (or a final evaluation) from its record.

    info: a round's summary record (``score_tokens``, ``train_n_input_tokens``, ``eval_*`` tokens,
    ``*_seconds``; see ``TOKEN_KEYS`` / ``SECONDS_KEYS``) or a final evaluation's metrics
    (``generation_*``). params / trainable: P and P_lora (``count_parameters``: ``matmul`` and
    ``trainable``). Returns ``{score,train,eval,generation}_tokens``, the same ``_flops``,
    ``total_flops``, the same ``_seconds`` plus ``threshold_seconds``, ``select_seconds`` and
    ``total_seconds``. A stage absent from the record counts 0. ``score_reused_tokens`` /
    ``_flops``: the scoring an incremental refresh did not pay (not in ``total_flops``).
    """
    out: dict[str, float] = {}
    train_stage = "train_full" if full_finetune else "train"
    for stage in TOKEN_KEYS:
        flop_stage = {"train": train_stage, REUSED: "score"}.get(stage, stage)
        tokens = stage_tokens(info, stage)
        out[f"{stage}_tokens"] = tokens
        out[f"{stage}_flops"] = stage_flops(
            flop_stage,
            tokens,
            params,
            trainable if flop_stage.startswith("train") else 0,
            checkpointing=checkpointing,
        )
    out["total_flops"] = sum(out[f"{s}_flops"] for s in TOKEN_STAGES)
    for stage, key in SECONDS_KEYS.items():
        out[f"{stage}_seconds"] = _number(info.get(key)) or 0.0
    out["total_seconds"] = sum(out[f"{s}_seconds"] for s in SECONDS_KEYS)
    return out


def run_compute(
    rounds: Iterable[Mapping],
    params: int,
    trainable: int,
    *,
    final: Mapping | None = None,
    **options,
) -> dict[str, float]:
    """Sum of :func:`round_compute` over a run's round records and its final evaluation."""
    records = [*rounds, *([final] if final is not None else [])]
    total: dict[str, float] = {}
    for record in records:
        for key, value in round_compute(record, params, trainable, **options).items():
            total[key] = total.get(key, 0.0) + value
    if not total:  # no record: every figure is 0, with the same keys
        total = {k: 0.0 for k in round_compute({}, params, trainable, **options)}
    return total


def _number(value) -> float | None:
    """A finite float from a record's value, else None (missing, None, NaN, non-numeric)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None
