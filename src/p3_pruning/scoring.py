"""Policy-driven difficulty (P3 step 1): every action probability of a sample from ONE forward pass.

For a sample with prompt x and reference response split into actions a_1 … a_K (``segment.py``):

    p_k = exp(mean over tokens t of a_k of log p(t | x, a_<k, earlier tokens of a_k))
    difficulty = 1 − (1/K) Σ_k p_k

The authors run one forward pass per action prefix. With a causal LM the prefix pass for a_k sees
exactly what the full teacher-forced pass sees at those positions, so one pass over prompt +
response yields every p_k. We batch samples by length under a token budget, run the transformer
body once, gather the hidden states of the scored positions only and apply the output layer to
them in chunks (log-softmax + gather per chunk), so neither the prompt positions' full-vocabulary
projection nor a ``B×T×V`` probability tensor is ever computed. The token prefix every sample
shares (the chat template's system turn) is run once and its key/value cache reused by all
batches. The same pass gives the sample's embedding for the DPP. A model whose logits are not
``output_layer(last hidden state)`` (logit soft-capping, prompt-tuning adapters) is detected on a
probe and scored through its own full forward instead, still with the chunked log-softmax.

Which tokens belong to which action (the token ↔ action rule), how a conversation is encoded and
what happens to a sequence over ``max_length`` (the length policy): ``p3_pruning.encoding``.

Conversations (a ``messages`` column, see ``p3_pruning.data.schema``): the whole conversation is
encoded with the model's chat template (``chat.encode_conversation``; plain-text fallback for a
tokenizer without one), every assistant turn is split into actions by the same segmenter, and all
of them are scored in the same one forward pass, each with every earlier turn as context. System and
user tokens are context only. ``difficulty = 1 − mean over all actions of all turns``; the scores
table then has a ``turn_probs`` column: per assistant turn, the mean p_k of its actions (NaN for a
turn with no action; turns cut by ``max_length`` are absent; a single-turn row in the same table has
one entry). For the embedding, a conversation's prompt is everything before its first assistant
turn. Rows whose ``messages`` is null are encoded as single-turn samples, exactly as without the
column.

Failures never drop a row: difficulty is ``+inf``, ``status`` a reason code (``empty_response``,
``no_actions``, ``missing_prompt``, ``too_long``, ``non_finite``, ``bad_messages``, ``template``,
``error``), ``reason`` a sentence,
``action_probs`` empty and the embedding row all zeros. A tokenizer without a pad token is not a
failure: padded positions are masked and never scored, so any id (eos, else 0) pads.
"""

from __future__ import annotations

import copy
import inspect
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import nullcontext

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from p3_pruning.chat import DEFAULT_SYSTEM
from p3_pruning.encoding import MAX_LENGTH, Encoded, ScoringError, encode_rows, length_batches
from p3_pruning.encoding import encode as encode  # documented as p3_pruning.scoring.encode
from p3_pruning.segment import get_segmenter

log = logging.getLogger(__name__)

# Padded tokens per scoring batch when not given. On CPU small batches keep the activations in cache:
# SmolLM2-135M on 2 cores, 60 GSM samples (~214 tokens): 256 → 326 tok/s, 768 → 389, 1024 → 361-399,
# 2048 → 340, 4096 → 287, 8192 → 232. On an accelerator bigger batches fill the device.
TOKEN_BUDGET = {"cpu": 1024, "default": 8192}
CHUNK_TOKENS = 512
N_PROMPT_PROBS = 30
MIN_PREFIX = 8  # shortest shared prefix worth caching
EMBEDS = ("prompt", "response", "all", "prompt_probs")
SCORE_COLUMNS = [
    "sample_id",
    "difficulty",
    "n_actions",
    "n_tokens",
    "action_probs",
    "status",
    "reason",
    "truncated",
]


def unscored_row(sample_id) -> dict:
    """A scores row before its pass: difficulty +inf, no actions, status ``ok`` until told."""
    return dict(
        sample_id=sample_id,
        difficulty=np.inf,
        n_actions=0,
        n_tokens=0,
        action_probs=[],
        status="ok",
        reason="",
        truncated=False,
    )


def default_token_budget(model) -> int:
    """Padded tokens per scoring batch for ``model``'s device (see ``TOKEN_BUDGET``)."""
    device = next(model.parameters()).device.type
    return TOKEN_BUDGET.get(device, TOKEN_BUDGET["default"])


class _Policy:
    """The model split into body (last hidden state) and output layer, so logits can be computed for
    chosen positions only. Falls back to the model's own full forward when the split does not
    reproduce the model's logits (e.g. logit soft-capping, prompt-tuning adapters).

    With ``set_prefix``, the token prefix every sample shares (the chat template's system turn) is
    run once and its key/value cache reused by every batch: causal attention makes the prefix's
    states the same in every sample, so this only removes repeated work.
    """

    def __init__(self, model, autocast: bool):
        self.model = model
        self.device = next(model.parameters()).device
        lm = model.get_base_model() if hasattr(model, "get_base_model") else model
        prefix = getattr(lm, "base_model_prefix", "")
        body = getattr(lm, prefix, None) if prefix else None
        self.body = body if body is not None and body is not lm else None
        self.head = lm.get_output_embeddings()
        self.split = self.body is not None and self.head is not None
        self.prefix_cache = self.prefix_hidden = None
        params = inspect.signature(self.body.forward).parameters if self.body is not None else {}
        self.cache_arg = "cache" if "cache" in params else "past_key_values"
        self.low_precision = False
        self.autocast = nullcontext
        if self.device.type == "cuda" and autocast:
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            self.autocast = lambda: torch.autocast("cuda", dtype=dtype)
            self.low_precision = True
        elif next(model.parameters()).dtype != torch.float32:
            self.low_precision = True
        self.tol = 2e-2 if self.low_precision else 1e-3

    def check_split(self, ids: list[int]) -> None:
        """Compare body + head with the model's own logits on a few tokens; fall back if they differ."""
        if not self.split:
            return
        x = torch.tensor([ids[:16]], device=self.device)
        with self.autocast():
            full = self.model(input_ids=x, use_cache=False).logits.float()
            mine = self.head(self.body(input_ids=x, use_cache=False).last_hidden_state).float()
        same = full.shape == mine.shape and torch.allclose(
            full.log_softmax(-1), mine.log_softmax(-1), atol=self.tol, rtol=0
        )
        if not same:
            log.info(
                "Output layer alone does not reproduce the model's logits: using full forwards"
            )
            self.split = False

    def set_prefix(self, prefix: list[int], probe: list[int]) -> None:
        """Cache the shared ``prefix`` once; keep it only if it reproduces ``probe``'s hidden states."""
        if not self.split:
            return
        try:
            with self.autocast():
                x = torch.tensor([prefix], device=self.device)
                out = self.body(input_ids=x, use_cache=True)
                cache = out.get("cache")  # named past_key_values before transformers 5
                self.prefix_cache = cache if cache is not None else out.get("past_key_values")
                self.prefix_hidden = out.last_hidden_state
                n = min(len(probe), len(prefix) + 16)
                y = torch.tensor([probe[:n]], device=self.device)
                full = self.body(input_ids=y, use_cache=False).last_hidden_state.float()
                mine = self._body(y, torch.ones_like(y)).float()
            ok = full.shape == mine.shape and torch.allclose(
                full, mine, atol=self.tol, rtol=self.tol
            )
        except Exception as exc:  # noqa: BLE001 - a model whose cache we cannot reuse
            log.info("Prefix cache unusable (%s): running every prefix", exc)
            ok = False
        if not ok:
            self.prefix_cache = self.prefix_hidden = None

    def _body(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.prefix_cache is None:
            return self.body(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state
        B, P = ids.shape[0], self.prefix_hidden.shape[1]
        cache = copy.deepcopy(self.prefix_cache)
        cache.batch_repeat_interleave(B)
        rest = self.body(
            input_ids=ids[:, P:], attention_mask=mask, use_cache=True, **{self.cache_arg: cache}
        ).last_hidden_state
        return torch.cat([self.prefix_hidden.expand(B, -1, -1).to(rest.dtype), rest], dim=1)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor):
        """``(hidden (B,T,H), source, head)``: ``head(source[b, t])`` are the logits at position t."""
        if self.split:
            hidden = self._body(ids, mask)
            return hidden, hidden, self.head
        out = self.model(
            input_ids=ids, attention_mask=mask, use_cache=False, output_hidden_states=True
        )
        return out.hidden_states[-1], out.logits, None


def common_prefix_len(seqs: Sequence[Sequence[int]]) -> int:
    """Length of the longest token prefix all ``seqs`` share, leaving each at least one more token."""
    if not seqs:
        return 0
    first, n = seqs[0], min(map(len, seqs)) - 1
    for seq in seqs[1:]:
        k = 0
        while k < n and seq[k] == first[k]:
            k += 1
        n = k
    return max(n, 0)


def token_logprobs(
    source: torch.Tensor,
    b_idx: torch.Tensor,
    t_idx: torch.Tensor,
    targets: torch.Tensor,
    head=None,
    *,
    chunk_tokens: int = CHUNK_TOKENS,
    vocab_chunk: int | None = None,
) -> torch.Tensor:
    """``log p(targets[m])`` from the logits at ``(b_idx[m], t_idx[m])``; (M,) float32.

    ``source`` is (B, T, H) hidden states turned into logits by ``head``, or (B, T, V) logits when
    ``head`` is None. Rows are gathered ``chunk_tokens`` at a time and, with ``vocab_chunk``, the
    output layer is applied ``vocab_chunk`` classes at a time with a running log-sum-exp, so at most
    ``chunk_tokens × min(V, vocab_chunk)`` logits exist at once.
    """
    out = torch.empty(len(targets), dtype=torch.float32, device=source.device)
    chunked_vocab = vocab_chunk is not None and isinstance(head, torch.nn.Linear)
    for c in range(0, len(targets), chunk_tokens):
        rows = source[b_idx[c : c + chunk_tokens], t_idx[c : c + chunk_tokens]]
        tgt = targets[c : c + chunk_tokens]
        if not chunked_vocab:
            logits = (head(rows) if head is not None else rows).float()
            out[c : c + len(tgt)] = logits.gather(1, tgt[:, None]).squeeze(1) - logits.logsumexp(1)
            continue
        lse = torch.full((len(tgt),), -torch.inf, device=rows.device)
        picked = torch.zeros(len(tgt), device=rows.device)
        for v0 in range(0, head.out_features, vocab_chunk):
            v1 = min(v0 + vocab_chunk, head.out_features)
            bias = head.bias[v0:v1] if head.bias is not None else None
            logits = F.linear(rows, head.weight[v0:v1], bias).float()
            lse = torch.logaddexp(lse, logits.logsumexp(1))
            inside = (tgt >= v0) & (tgt < v1)
            picked[inside] = logits[inside, tgt[inside] - v0]
        out[c : c + len(tgt)] = picked - lse
    return out


def action_probs(
    source: torch.Tensor,
    ids: torch.Tensor,
    spans: Sequence[Sequence[tuple[int, int]]],
    head=None,
    *,
    chunk_tokens: int = CHUNK_TOKENS,
    vocab_chunk: int | None = None,
) -> list[list[float]]:
    """p_k of every action of every row from one teacher-forced pass: ``spans[b]`` are row b's
    action token ranges ``[start, end)`` in ``ids`` (B, T); ``source`` as in
    :func:`token_logprobs`. The scorer and the training-pass measurement
    (``p3_pruning.train_scores``) both call this, so both apply the same token → action rule."""
    B, T = ids.shape
    dev = ids.device
    scored = np.zeros((B, T), dtype=bool)
    for b, row in enumerate(spans):
        for s, e in row:
            scored[b, s:e] = True
    b_np, t_np = np.nonzero(scored)
    b_idx, t_idx = torch.from_numpy(b_np).to(dev), torch.from_numpy(t_np).to(dev)
    # logits at position t − 1 predict token t
    logp = token_logprobs(
        source,
        b_idx,
        t_idx - 1,
        ids[b_idx, t_idx],
        head,
        chunk_tokens=chunk_tokens,
        vocab_chunk=vocab_chunk,
    )
    # per-action means from prefix sums over the (B, T + 1) grid of token log-probs
    grid = torch.zeros((B, T + 1), dtype=torch.float64, device=dev)
    grid[b_idx, t_idx + 1] = logp.double()
    csum = grid.cumsum(1).cpu().numpy()
    return [
        [float(np.exp((csum[b, e] - csum[b, s]) / (e - s))) for s, e in row]
        for b, row in enumerate(spans)
    ]


def _score_batch(policy: _Policy, items: list[Encoded], pad_id: int, opts: dict):
    """Action probabilities (list per item) and embeddings (B, d) float32 for one padded batch."""
    dev = policy.device
    B, T = len(items), max(len(it.input_ids) for it in items)
    ids = torch.full((B, T), pad_id, dtype=torch.long)
    mask = torch.zeros((B, T), dtype=torch.long)
    for b, it in enumerate(items):
        ids[b, : len(it.input_ids)] = torch.tensor(it.input_ids)
        mask[b, : len(it.input_ids)] = 1
    ids, mask = ids.to(dev), mask.to(dev)

    with policy.autocast():
        hidden, source, head = policy.forward(ids, mask)
        probs = action_probs(
            source,
            ids,
            [it.action_spans for it in items],
            head,
            chunk_tokens=opts["chunk_tokens"],
            vocab_chunk=opts["vocab_chunk"],
        )
        emb = _embed(policy, items, hidden, source, head, ids, opts)
    return probs, emb


def _embed(policy, items, hidden, source, head, ids, opts) -> np.ndarray:
    B, T = ids.shape
    if opts["embed"] == "prompt_probs":
        k = opts["n_prompt_probs"]
        out = np.zeros((B, k), dtype=np.float32)
        pos = [(b, t) for b, it in enumerate(items) for t in range(1, it.prompt_len)]
        if not pos:
            return out
        b_idx = torch.tensor([p[0] for p in pos], device=ids.device)
        t_idx = torch.tensor([p[1] for p in pos], device=ids.device)
        lp = token_logprobs(
            source,
            b_idx,
            t_idx - 1,
            ids[b_idx, t_idx],
            head,
            chunk_tokens=opts["chunk_tokens"],
            vocab_chunk=opts["vocab_chunk"],
        )
        p = lp.exp().cpu().numpy()
        bs = b_idx.cpu().numpy()
        for b in range(B):
            smallest = np.sort(p[bs == b])[:k]
            out[b, : len(smallest)] = smallest
        return out
    weights = torch.zeros((B, T), dtype=torch.float32, device=ids.device)
    for b, it in enumerate(items):
        lo, hi = {
            "prompt": (0, it.prompt_len),
            "response": (it.prompt_len, len(it.input_ids)),
            "all": (0, len(it.input_ids)),
        }[opts["embed"]]
        weights[b, lo:hi] = 1.0 / max(hi - lo, 1)
    emb = torch.einsum("bt,bth->bh", weights, hidden.float())
    emb = emb / emb.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return emb.cpu().numpy().astype(np.float32)


def score_samples(
    model,
    tokenizer,
    samples: pd.DataFrame,
    *,
    segmenter: str | Callable = "newline",
    pattern: str | None = None,
    embed: str = "prompt",
    max_length: int | None = MAX_LENGTH,
    token_budget: int | None = None,
    chunk_tokens: int = CHUNK_TOKENS,
    vocab_chunk: int | None = None,
    n_prompt_probs: int = N_PROMPT_PROBS,
    system: str | None = DEFAULT_SYSTEM,
    autocast: bool = True,
    prefix_cache: bool = True,
    progress: bool = True,
) -> tuple[pd.DataFrame, np.ndarray]:
    """Policy-driven difficulty and DPP embeddings of every sample, one teacher-forced pass each.

    Args:
        model: any HF causal LM, plain or wrapped by peft (``PeftModel``); scored in eval mode.
        samples: the samples table (needs ``sample_id``, ``prompt``, ``response``).
        segmenter / pattern: how responses split into actions (``newline``, ``sentence``, ``code``,
            ``regex`` + ``pattern``, or a callable); see ``p3_pruning.segment``.
        embed: ``prompt`` (default) / ``response`` / ``all``: mean of the last hidden state over those
            tokens, L2-normalised, (n, hidden); ``prompt_probs``: the paper's feature, the
            ``n_prompt_probs`` smallest prompt-token probabilities ascending, zero-padded, (n, 30).
        max_length: longest sequence fed; longer ones are truncated at an action boundary.
        token_budget: padded tokens per batch (B × T); None → :func:`default_token_budget`.
        chunk_tokens / vocab_chunk: positions (and vocabulary entries) per output-layer chunk;
            ``vocab_chunk`` applies when the output layer is a plain ``nn.Linear``.
        system: system prompt for the chat template (as in training).
        autocast: bf16 (else fp16) autocast on CUDA.
        prefix_cache: run the token prefix all samples share (system turn) once and reuse its
            key/value cache (checked against a plain pass first; skipped if it differs).

    Returns:
        ``scores``: DataFrame in input row order with ``sample_id, difficulty, n_actions, n_tokens,
        action_probs, status, reason, truncated`` (``n_tokens``: prompt + response + end-of-turn
        before truncation; ``n_actions``/``action_probs``: the scored actions), and ``turn_probs``
        when ``samples`` has a ``messages`` column (module doc);
        ``embeddings``: (n, d) float32, zeros for failed rows.
    """
    _check_options(samples, embed, token_budget, chunk_tokens, vocab_chunk)
    if token_budget is None:
        token_budget = default_token_budget(model)
    opts = dict(
        embed=embed,
        chunk_tokens=int(chunk_tokens),
        vocab_chunk=vocab_chunk,
        n_prompt_probs=int(n_prompt_probs),
    )
    split = get_segmenter(segmenter, pattern=pattern)
    rows, encoded = _encode_rows(tokenizer, samples, split, system=system, max_length=max_length)
    results = _score_encoded(
        model,
        tokenizer,
        encoded,
        rows,
        opts,
        token_budget=int(token_budget),
        autocast=autocast,
        prefix_cache=prefix_cache,
        progress=progress,
    )
    scores, embeddings = _assemble(
        model, rows, encoded, results, opts, turned="messages" in samples.columns
    )
    counts = Counter(scores["status"])
    n = len(scores)
    log.info(
        "Scored %d samples: %s; %d truncated to max_length=%s",
        n,
        dict(counts),
        int(scores["truncated"].sum()),
        max_length,
    )
    if n - counts.get("ok", 0):
        log.warning("%d of %d samples could not be scored (difficulty +inf)", n - counts["ok"], n)
    return scores, embeddings


def _check_options(samples, embed, token_budget, chunk_tokens, vocab_chunk) -> None:
    missing = [c for c in ("sample_id", "prompt", "response") if c not in samples.columns]
    if missing:
        raise ValueError(f"samples table lacks column(s) {missing}; found {list(samples.columns)}")
    if embed not in EMBEDS:
        raise ValueError(f"unknown embed {embed!r}; expected one of {EMBEDS}")
    for name, value in (("token_budget", token_budget), ("chunk_tokens", chunk_tokens)):
        if value is not None and int(value) < 1:  # token_budget None: the device default
            raise ValueError(f"{name} must be ≥ 1, got {value}")
    if vocab_chunk is not None and int(vocab_chunk) < 1:
        raise ValueError(f"vocab_chunk must be ≥ 1 or None, got {vocab_chunk}")


def _encode_rows(tokenizer, samples, split, *, system, max_length):
    """``(rows, encoded)``: one scores row per sample (failed encodings already marked) and the
    ``Encoded`` of every sample that can be fed, by row position."""
    rows = [unscored_row(sid) for sid in samples["sample_id"].tolist()]
    encoded: dict[int, Encoded] = {}
    each = encode_rows(tokenizer, samples, split, system=system, max_length=max_length)
    for i, enc in enumerate(each):
        if isinstance(enc, ScoringError):
            rows[i].update(status=enc.status, reason=enc.reason, n_tokens=enc.n_tokens)
            continue
        encoded[i] = enc
        rows[i].update(n_tokens=enc.n_tokens, truncated=enc.truncated)
    return rows, encoded


def _score_encoded(
    model, tokenizer, encoded, rows, opts, *, token_budget, autocast, prefix_cache, progress
) -> dict[int, tuple[list[float], np.ndarray]]:
    """Action probabilities and embedding of every encoded sample, batched by length, in eval mode."""
    policy = _Policy(model, autocast)
    pad_id = tokenizer.pad_token_id
    if pad_id is None:
        pad_id = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
        log.warning(
            "Tokenizer has no pad token; padding with id %d (padded positions are masked)", pad_id
        )
    results: dict[int, tuple[list[float], np.ndarray]] = {}
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            if encoded:
                probe = next(iter(encoded.values())).input_ids
                policy.check_split(probe)
                shared = common_prefix_len([e.input_ids for e in encoded.values()])
                if prefix_cache and shared >= MIN_PREFIX:
                    policy.set_prefix(probe[:shared], probe)
            keys = list(encoded)
            batches = length_batches([len(encoded[i].input_ids) for i in keys], token_budget)
            bar = tqdm(total=len(keys), desc="scoring", unit="sample", disable=not progress)
            for batch in batches:
                _run(policy, [keys[j] for j in batch], encoded, pad_id, opts, results, rows)
                bar.update(len(batch))
            bar.close()
    finally:
        model.train(was_training)
    return results


def _assemble(model, rows, encoded, results, opts, *, turned: bool):
    """The scores table (``SCORE_COLUMNS``, + ``turn_probs`` when ``turned``) and the embeddings."""
    dim = None
    for i, (probs, emb) in results.items():
        dim = len(emb)
        if not all(np.isfinite(probs)):
            rows[i].update(status="non_finite", reason="an action probability is NaN or infinite")
            continue
        rows[i].update(
            n_actions=len(probs), action_probs=probs, difficulty=1.0 - float(np.mean(probs))
        )
        if turned:
            rows[i]["turn_probs"] = turn_means(probs, encoded[i].turn_actions)
    if dim is None:
        dim = opts["n_prompt_probs"] if opts["embed"] == "prompt_probs" else _hidden_size(model)
    embeddings = np.zeros((len(rows), dim), dtype=np.float32)
    for i, (_, emb) in results.items():
        if rows[i]["status"] == "ok":
            embeddings[i] = emb
    if turned:
        for row in rows:
            row.setdefault("turn_probs", [])
    scores = pd.DataFrame(rows, columns=[*SCORE_COLUMNS, *(["turn_probs"] if turned else [])])
    return scores, embeddings


def turn_means(probs: Sequence[float], turn_actions: Sequence[int] | None) -> list[float]:
    """Mean action probability per assistant turn (NaN for a turn without actions); a single-turn
    sample (``turn_actions`` None) is one turn."""
    if turn_actions is None:
        return [float(np.mean(probs))]
    out, start = [], 0
    for count in turn_actions:
        part = probs[start : start + count]
        out.append(float(np.mean(part)) if count else float("nan"))
        start += count
    return out


def _run(policy, idx: list[int], encoded, pad_id, opts, results, rows) -> None:
    """Score one batch; on failure retry its halves, and mark a single failing sample as an error."""
    try:
        probs, emb = _score_batch(policy, [encoded[i] for i in idx], pad_id, opts)
    except Exception as exc:  # noqa: BLE001 - a failing sample must become a row, not a crash
        if policy.device.type == "cuda":
            torch.cuda.empty_cache()
        if len(idx) > 1:
            half = len(idx) // 2
            _run(policy, idx[:half], encoded, pad_id, opts, results, rows)
            _run(policy, idx[half:], encoded, pad_id, opts, results, rows)
            return
        log.warning("Scoring sample %r failed: %s", rows[idx[0]]["sample_id"], exc)
        rows[idx[0]].update(status="error", reason=f"{type(exc).__name__}: {exc}")
        return
    for i, p, e in zip(idx, probs, emb, strict=True):
        results[i] = (p, e)


def _hidden_size(model) -> int:
    lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    head = lm.get_output_embeddings()
    if isinstance(head, torch.nn.Linear):
        return head.in_features
    return int(lm.config.hidden_size)
