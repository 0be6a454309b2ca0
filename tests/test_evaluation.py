"""Generation (left padding, stop at the answer), accuracy tables and the cheap forward-only metrics."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from p3_pruning.evaluation import (
    accuracy_table,
    cheap_eval,
    evaluate_generation,
    generate,
    greedy_decode,
    response_nll,
)
from p3_pruning.models import load_model, tiny_model
from p3_pruning.scoring import score_samples
from p3_pruning.training import build_features

torch.set_num_threads(2)
SYSTEM = "Be brief."


@pytest.fixture(scope="module")
def tiny():
    return load_model("tiny-random", seed=0)


def echo_model(tokenizer, text: str):
    """A model whose greedy output after the prompt's final newline is ``text`` repeated forever.

    Attention and MLP outputs are zeroed, so the next token depends on the current token only:
    token k of the cycle is embedded as basis vector k, and the head maps basis vector k to token k+1.
    """
    cycle = tokenizer(text, add_special_tokens=False)["input_ids"]
    newline = tokenizer("\n", add_special_tokens=False)["input_ids"]
    assert cycle[-1] == newline[-1] and len(set(cycle)) == len(cycle)
    model = tiny_model(tokenizer, seed=0)
    d, vocab = model.config.hidden_size, model.config.vocab_size
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        head = torch.zeros(vocab, d)
        embed = model.model.embed_tokens.weight
        for k, tok in enumerate(cycle):
            embed[tok] = 0.0
            embed[tok, k] = 1.0
            head[cycle[(k + 1) % len(cycle)], k] = 10.0
    model.lm_head = torch.nn.Linear(d, vocab, bias=False)
    model.lm_head.weight = torch.nn.Parameter(head)
    model.config.tie_word_embeddings = False
    return model.eval()


def _samples(n: int, **cols) -> pd.DataFrame:
    prompts = [
        "What is 3 + 4?",
        "Add 2 and 6, then tell me the total please.",
        "1 + 1?",
        "Compute 12 + 30 + 5 now.",
    ]
    return pd.DataFrame({"sample_id": [f"e{i}" for i in range(n)], "prompt": prompts[:n], **cols})


def untied_model(tokenizer):
    """The tiny model with its own random output head: unlike the tied one (which repeats its input
    token), its greedy continuation depends on the whole context."""
    model = tiny_model(tokenizer, seed=0)
    gen = torch.Generator().manual_seed(1)
    model.lm_head = torch.nn.Linear(model.config.hidden_size, model.config.vocab_size, bias=False)
    model.lm_head.weight = torch.nn.Parameter(
        torch.randn(model.config.vocab_size, model.config.hidden_size, generator=gen)
    )
    model.config.tie_word_embeddings = False
    return model.eval()


def test_left_padded_batches_match_one_by_one(tiny):
    tokenizer = tiny[1]
    model = untied_model(tokenizer)
    samples = _samples(4)
    opts = dict(max_new_tokens=6, system=SYSTEM, stop_at_answer=False, progress=False)
    batched = generate(model, tokenizer, samples, batch_size=4, **opts)
    single = generate(model, tokenizer, samples, batch_size=1, **opts)
    assert batched == single
    assert len(set(batched)) == 4  # outputs depend on the (differently padded) prompts
    assert tokenizer.padding_side == "right" and not model.training


def test_greedy_decode_drops_finished_rows_and_matches_hf_generate(tiny):
    """Rows that end early (eos or the stop rule) leave the batch; the others' tokens do not change."""
    from p3_pruning.chat import prompt_text

    tokenizer = tiny[1]
    model = untied_model(tokenizer)
    prompts = list(_samples(4)["prompt"]) + ["Say something long.", "Why?"]
    texts = [prompt_text(tokenizer, p, system=SYSTEM) for p in prompts]
    tokenizer.padding_side = "left"
    try:
        enc = tokenizer(texts, add_special_tokens=False, padding=True, return_tensors="pt")
    finally:
        tokenizer.padding_side = "right"
    width, n_new = enc["input_ids"].shape[1], 12
    with torch.inference_mode():
        reference = model.generate(
            **enc, max_new_tokens=n_new, do_sample=False, eos_token_id=None, pad_token_id=0
        )[:, width:].tolist()
    eos = reference[0][4]  # row 0 ends at its fifth token; others may meet it too, or never
    stop_token = reference[1][2]

    def expected(row):
        out = []
        for t in row:
            if t == eos:
                break
            out.append(t)
            if t == stop_token:
                break
        return out

    batch_sizes = []
    hook2 = model.model.register_forward_pre_hook(
        lambda _m, _a, kw: batch_sizes.append(kw["input_ids"].shape[0]), with_kwargs=True
    )
    try:
        got = greedy_decode(
            model,
            enc["input_ids"],
            enc["attention_mask"],
            max_new_tokens=n_new,
            eos_token_id=eos,
            stop=lambda ids: ids[-1] == stop_token,
        )
    finally:
        hook2.remove()
    assert got == [expected(r) for r in reference]
    assert len(got[0]) <= 4 and len(got[1]) <= 3 and len({len(r) for r in got}) > 1
    # finished rows left the batch: the batch only shrinks, and ends smaller than it started
    assert batch_sizes[0] == 6 and batch_sizes == sorted(batch_sizes, reverse=True)
    assert batch_sizes[-1] < 6 and len(batch_sizes) == max(len(r) for r in got) + (
        0 if max(len(r) for r in got) == n_new else 1
    )


def test_generation_stops_at_the_answer_line(tiny):
    tokenizer = tiny[1]
    model = echo_model(tokenizer, "Answer: 7\n")
    calls = []
    hook = model.register_forward_hook(lambda *_: calls.append(1))
    samples = _samples(2)
    try:
        stopped = generate(
            model, tokenizer, samples, max_new_tokens=20, system=SYSTEM, progress=False
        )
        n_stopped = len(calls)
        calls.clear()
        free = generate(
            model,
            tokenizer,
            samples,
            max_new_tokens=20,
            system=SYSTEM,
            stop_at_answer=False,
            progress=False,
        )
    finally:
        hook.remove()
    assert stopped == ["Answer: 7", "Answer: 7"]
    assert n_stopped == 5  # "Answer", ":", " ", "7", "\n"
    assert len(calls) == 20 and free[0].startswith("Answer: 7\nAnswer: 7\nAnswer")


def test_evaluate_generation_tables(tiny):
    tokenizer = tiny[1]
    model = echo_model(tokenizer, "Answer: 7\n")

    def rg(answer):
        return json.dumps(
            {"task": "chain_sum", "entry": {"question": "?", "answer": answer, "metadata": {}}}
        )

    samples = _samples(
        4,
        source=["reasoning_gym/chain_sum", "reasoning_gym/chain_sum", "gsm8k", "gsm8k"],
        level=["L1", "L2", "L1", None],
        answer=["7", "8", "7", "70"],
        meta=[rg("7"), rg("8"), "{}", "{}"],
    )
    per_sample, summary = evaluate_generation(
        model, tokenizer, samples, max_new_tokens=12, system=SYSTEM, progress=False
    )
    assert per_sample["sample_id"].tolist() == ["e0", "e1", "e2", "e3"]
    assert per_sample["correct"].tolist() == [True, False, True, False]
    assert per_sample["response"].tolist() == ["Answer: 7"] * 4
    by = {(r.scope, _none(r.source), _none(r.level)): r for r in summary.itertuples()}
    assert by[("all", None, None)].n == 4 and by[("all", None, None)].accuracy == 0.5
    assert by[("source", "gsm8k", None)].accuracy == 0.5
    assert by[("level", None, "L1")].n == 2 and by[("level", None, "L1")].accuracy == 1.0
    assert by[("source_level", "reasoning_gym/chain_sum", "L2")].accuracy == 0.0
    assert by[("all", None, None)].stderr == pytest.approx(0.25)


def _none(x):
    return None if pd.isna(x) else x


def test_summarize_counts_each_sample_once():
    per = pd.DataFrame(
        {
            "source": ["a", "a", "b"],
            "level": ["1", None, "1"],
            "score": [1.0, 0.5, 0.0],
            "correct": [True, False, False],
        }
    )
    s = accuracy_table(per)
    assert s[s.scope == "source"]["n"].sum() == 3
    assert s[s.scope == "level"]["n"].sum() == 2  # rows without a level are not in a level group
    assert s[s.scope == "all"]["mean_score"].item() == pytest.approx(0.5)


def test_response_nll_matches_the_model_loss_and_ignores_batching(tiny):
    model, tokenizer = tiny
    samples = _samples(3, response=["7", "2 + 6 = 8\nAnswer: 8", "Answer: 2"])
    nll, n = response_nll(model, tokenizer, samples, batch_size=3, system=SYSTEM, progress=False)
    nll_one, n_one = response_nll(
        model, tokenizer, samples, batch_size=1, system=SYSTEM, progress=False
    )
    np.testing.assert_allclose(nll, nll_one, rtol=1e-5)
    assert (n == n_one).all()
    for i, f in enumerate(build_features(tokenizer, samples, system=SYSTEM)):
        with torch.inference_mode():
            loss = model(
                input_ids=torch.tensor([f["input_ids"]]), labels=torch.tensor([f["labels"]])
            ).loss
        assert nll[i] / n[i] == pytest.approx(loss.item(), rel=1e-5)
    assert n[0] == 2  # "7" + end-of-turn


def test_cheap_eval(tiny):
    model, tokenizer = tiny
    samples = _samples(3, response=["7", "2 + 6 = 8\nAnswer: 8", "Answer: 2"])
    m = cheap_eval(model, tokenizer, samples, system=SYSTEM, difficulty=False, progress=False)
    nll, n = response_nll(model, tokenizer, samples, system=SYSTEM, progress=False)
    assert m["nll"] == pytest.approx(nll.sum() / n.sum())
    assert m["perplexity"] == pytest.approx(np.exp(m["nll"]))
    assert (m["n_samples"], m["n_tokens"]) == (3, int(n.sum()))
    # compute accounting counts every token the pass read, prompt and template included
    read = sum(len(f["input_ids"]) for f in build_features(tokenizer, samples, system=SYSTEM))
    assert m["n_input_tokens"] == read > m["n_tokens"]
    assert "difficulty" not in m


def test_cheap_eval_refuses_a_non_finite_nll(tiny):
    _, tokenizer = tiny
    broken = tiny_model(tokenizer, seed=0).eval()
    with torch.no_grad():  # what a diverged adapter merged into the model leaves behind
        broken.model.layers[0].self_attn.q_proj.weight[0, 0] = float("nan")
    samples = _samples(3, response=["7", "2 + 6 = 8\nAnswer: 8", "Answer: 2"])
    with pytest.raises(
        ValueError, match=r"held-out NLL is nan \(3 of 3 samples non-finite, e\.g\. \['e0'"
    ):
        cheap_eval(broken, tokenizer, samples, system=SYSTEM, difficulty=False, progress=False)


def test_cheap_eval_difficulty(tiny):
    model, tokenizer = tiny
    samples = _samples(3, response=["7", "2 + 6 = 8\nAnswer: 8", "Answer: 2"])
    m = cheap_eval(model, tokenizer, samples, system=SYSTEM, progress=False)
    scores, _ = score_samples(model, tokenizer, samples, system=SYSTEM, progress=False)
    assert 0.0 <= m["difficulty"] <= 1.0
    assert m["difficulty"] == pytest.approx(float(np.mean(scores["difficulty"])))
    assert m["n_failed"] == 0


def test_lora_model_decodes_through_a_merged_copy(tiny):
    from peft import PeftModel, get_peft_model

    from p3_pruning.evaluation import merged_copy
    from p3_pruning.training import lora_config

    tokenizer = tiny[1]
    base = untied_model(tokenizer)
    peft_model = get_peft_model(base, lora_config(base, {"r": 4, "dropout": 0.0}))
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    peft_model.eval()
    merged = merged_copy(peft_model)
    assert not isinstance(merged, PeftModel) and isinstance(peft_model, PeftModel)
    ids = torch.tensor([tokenizer("Compute 12 + 30", add_special_tokens=False)["input_ids"]])
    with torch.inference_mode():
        torch.testing.assert_close(merged(ids).logits, peft_model(ids).logits, atol=1e-3, rtol=1e-3)
    samples = _samples(4)
    opts = dict(max_new_tokens=6, system=SYSTEM, stop_at_answer=False, progress=False)
    fast = generate(peft_model, tokenizer, samples, merge_lora=True, **opts)
    slow = generate(peft_model, tokenizer, samples, merge_lora=False, **opts)
    assert fast == slow
    assert hasattr(
        peft_model.get_base_model().model.layers[0].self_attn.q_proj, "lora_A"
    )  # still LoRA
