"""score_samples against a deliberately slow reference: one forward pass per action prefix, full softmax."""

import functools
import math
import random

import numpy as np
import pandas as pd
import pytest
import torch

from p3_pruning.chat import encode_pair
from p3_pruning.encoding import encode, length_batches
from p3_pruning.models import load_model, tiny_model
from p3_pruning.scoring import score_samples

torch.set_num_threads(2)


def make_samples(n: int, seed: int = 0) -> pd.DataFrame:
    """Arithmetic samples with 1–10 one-line actions and prompts of mixed length."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        terms = [rng.randint(1, 99) for _ in range(1 + i % 10)]
        prompt = (
            "Add the numbers "
            + ", ".join(map(str, terms))
            + "."
            + " Show each step." * rng.randint(0, 6)
        )
        total, lines = 0, []
        for t in terms[:-1] if len(terms) > 1 else terms:
            total += t
            lines.append(f"Running total: {total}")
        total = sum(terms)
        lines[-1:] = [f"Answer: {total}"] if len(terms) == 1 else lines[-1:] + [f"Answer: {total}"]
        sep = "\n\n" if i % 3 == 0 else "\n"
        rows.append(dict(sample_id=f"s{i}", prompt=prompt, response=sep.join(lines)))
    return pd.DataFrame(rows)


def reference_action_probs(model, input_ids, spans) -> list[float]:
    """p_k from one forward pass over the prefix through action k, with a full-vocabulary softmax."""
    probs = []
    for s, e in spans:
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([input_ids[:e]])).logits[0]
        p = torch.softmax(logits[s - 1 : e - 1].double(), dim=-1)  # rows predicting tokens s … e-1
        logp = [math.log(p[t - s, input_ids[t]].item()) for t in range(s, e)]
        probs.append(math.exp(sum(logp) / len(logp)))
    return probs


@functools.lru_cache(maxsize=1)
def tokenizer():
    """The SmolLM2 tokenizer of ``load_model("tiny-random")``, loaded once per test session."""
    return load_model("tiny-random")[1]


def tiny():
    """A fresh ``load_model("tiny-random")`` model (same seed, same weights) and the shared tokenizer."""
    tok = tokenizer()
    return tiny_model(tok, seed=0).eval(), tok


def fit_head(model, tokenizer, samples, beta=2.0):
    """Give the random model an untied output layer that favours the tokens of ``samples``.

    Output row of token t += beta · unit(sum of the unit last hidden states that precede t): a
    closed-form stand-in for training, so action probabilities spread over (0, 1) instead of sitting
    at 1/|V|, and the |Δp| ≤ 1e-4 check means something.
    """
    head = torch.nn.Linear(model.lm_head.in_features, model.lm_head.out_features, bias=False)
    acc: dict[int, torch.Tensor] = {}
    with torch.no_grad():
        head.weight.copy_(model.lm_head.weight)
        for _, row in samples.iterrows():
            ids, spans = encode(tokenizer, row)
            h = model.model(input_ids=torch.tensor([ids])).last_hidden_state[0]
            for t in range(spans[0][0], spans[-1][1]):
                acc[ids[t]] = acc.get(ids[t], 0) + h[t - 1] / h[t - 1].norm()
        for t, v in acc.items():
            head.weight[t] += beta * v / v.norm()
    model.lm_head = head
    return model


@pytest.fixture(scope="module")
def trained():
    model, tok = tiny()
    samples = make_samples(10)
    return fit_head(model, tok, samples), tok, samples


def test_one_pass_matches_per_action_reference(trained):
    model, tokenizer, samples = trained
    lengths = [len(encode(tokenizer, r)[0]) for _, r in samples.iterrows()]
    budget = 3 * max(lengths)
    # the batches really mix lengths, so padding is exercised
    assert any(len({lengths[i] for i in b}) > 1 for b in length_batches(lengths, budget))
    scores, _ = score_samples(model, tokenizer, samples, token_budget=budget, progress=False)
    assert (scores["status"] == "ok").all()
    assert sorted(set(scores["n_actions"])) == list(range(1, 11))
    worst, spread = 0.0, []
    for (_, row), got in zip(samples.iterrows(), scores["action_probs"], strict=True):
        ids, spans = encode(tokenizer, row)
        want = reference_action_probs(model, ids, spans)
        assert len(got) == len(want)
        worst = max(worst, float(np.max(np.abs(np.array(got) - np.array(want)))))
        # also compare on the log scale, where tiny probabilities still differ visibly
        np.testing.assert_allclose(np.log(got), np.log(want), atol=1e-4)
        spread.extend(want)
    assert worst <= 1e-4
    assert max(spread) > 0.5 and min(spread) < 0.1, "probabilities should cover a real range"
    expected = 1 - scores["action_probs"].map(np.mean)
    np.testing.assert_allclose(scores["difficulty"], expected, rtol=0, atol=1e-12)


def test_chunking_and_batching_do_not_change_results(trained):
    model, tokenizer, samples = trained
    samples = samples.iloc[:6]
    base, emb = score_samples(model, tokenizer, samples, progress=False)
    one, emb1 = score_samples(
        model,
        tokenizer,
        samples,
        token_budget=1,
        chunk_tokens=7,
        vocab_chunk=5000,
        prefix_cache=False,
        progress=False,
    )
    np.testing.assert_allclose(
        np.concatenate(base["action_probs"].tolist()),
        np.concatenate(one["action_probs"].tolist()),
        atol=1e-6,
    )
    np.testing.assert_allclose(emb, emb1, atol=1e-5)


def test_peft_adapter_is_scored(trained):
    peft = pytest.importorskip("peft")
    _, tokenizer, samples = trained
    base, _ = tiny()
    config = peft.LoraConfig(
        r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False
    )
    wrapped = peft.get_peft_model(base, config)
    wrapped.eval()
    sub = samples.iloc[:5]
    scores, emb = score_samples(wrapped, tokenizer, sub, token_budget=400, progress=False)
    with wrapped.disable_adapter():
        plain, _ = score_samples(wrapped, tokenizer, sub, token_budget=400, progress=False)
    for (_, row), got, no_adapter in zip(
        sub.iterrows(), scores["action_probs"], plain["action_probs"], strict=True
    ):
        ids, spans = encode(tokenizer, row)
        want = reference_action_probs(wrapped, ids, spans)
        np.testing.assert_allclose(np.log(got), np.log(want), atol=1e-4)
        assert np.max(np.abs(np.log(got) - np.log(no_adapter))) > 1e-3, "the adapter must matter"
    assert emb.shape == (5, 64)


def test_model_whose_logits_are_not_the_bare_head_falls_back_to_full_forward(trained):
    from transformers import Gemma2Config, Gemma2ForCausalLM

    _, tokenizer, samples = trained
    config = Gemma2Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        final_logit_softcapping=2.0,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    torch.manual_seed(0)
    model = Gemma2ForCausalLM(config).eval()
    sub = samples.iloc[:4]
    scores, _ = score_samples(model, tokenizer, sub, token_budget=400, progress=False)
    for (_, row), got in zip(sub.iterrows(), scores["action_probs"], strict=True):
        ids, spans = encode(tokenizer, row)
        np.testing.assert_allclose(
            np.log(got), np.log(reference_action_probs(model, ids, spans)), atol=1e-4
        )


def test_embeddings_match_reference_hidden_states_and_prompt_probs(trained):
    model, tokenizer, samples = trained
    sub = samples.iloc[:6]
    by_mode = {
        m: score_samples(model, tokenizer, sub, embed=m, token_budget=500, progress=False)[1]
        for m in ("prompt", "response", "all", "prompt_probs")
    }
    for b, (_, row) in enumerate(sub.iterrows()):
        ids, prompt_len, _ = encode_pair(tokenizer, row["prompt"], row["response"])
        with torch.no_grad():
            out = model(input_ids=torch.tensor([ids]), output_hidden_states=True)
        h = out.hidden_states[-1][0]
        for mode, (lo, hi) in {
            "prompt": (0, prompt_len),
            "response": (prompt_len, len(ids)),
            "all": (0, len(ids)),
        }.items():
            v = h[lo:hi].mean(0)
            np.testing.assert_allclose(by_mode[mode][b], (v / v.norm()).numpy(), atol=1e-5)
        p = torch.softmax(out.logits[0].double(), -1)
        prompt_p = np.sort([p[t - 1, ids[t]].item() for t in range(1, prompt_len)])[:30]
        want = np.zeros(30)
        want[: len(prompt_p)] = prompt_p
        np.testing.assert_allclose(by_mode["prompt_probs"][b], want, rtol=1e-4, atol=1e-7)


def test_shared_system_prefix_is_cached_and_verified(trained):
    from p3_pruning.scoring import _Policy, common_prefix_len

    model, tokenizer, samples = trained
    seqs = [encode(tokenizer, row)[0] for _, row in samples.iterrows()]
    shared = common_prefix_len(seqs)
    assert shared > 20 and len({tuple(s[:shared]) for s in seqs}) == 1
    assert len({s[shared] for s in seqs}) > 1  # the longest one
    assert common_prefix_len([[1, 2, 3], [1, 2, 3, 4]]) == 2  # one token always left to run
    policy = _Policy(model, autocast=True)
    with torch.inference_mode():
        policy.set_prefix(seqs[0][:shared], seqs[0])
    assert policy.prefix_cache is not None, "the reference test must exercise the cached path"
