"""Multi-turn difficulty: one forward pass over the whole conversation vs a per-turn prefix reference."""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from p3_pruning.chat import encode_conversation, encode_pair
from p3_pruning.data import load_samples
from p3_pruning.encoding import token_spans
from p3_pruning.models import load_model, tiny_model
from p3_pruning.scoring import SCORE_COLUMNS, score_samples
from p3_pruning.segment import segment

torch.set_num_threads(2)
DATA = Path(__file__).parent / "data"


@functools.lru_cache(maxsize=1)
def tokenizer():
    return load_model("tiny-random")[1]


@pytest.fixture(scope="module")
def model_and_chats():
    """The tiny model with an output layer pulled towards the assistant tokens (as in
    test_scoring_reference), so probabilities spread over (0, 1)."""
    tok = tokenizer()
    model = tiny_model(tok, seed=0).eval()
    chats, _ = load_samples(DATA / "chat.jsonl", "chat")
    head = torch.nn.Linear(model.lm_head.in_features, model.lm_head.out_features, bias=False)
    acc: dict[int, torch.Tensor] = {}
    with torch.no_grad():
        head.weight.copy_(model.lm_head.weight)
        for messages in chats["messages"]:
            ids, _, turns = encode_conversation(tok, json.loads(messages))
            h = model.model(input_ids=torch.tensor([ids])).last_hidden_state[0]
            for turn in turns:
                for t in range(turn.start, turn.end):
                    acc[ids[t]] = acc.get(ids[t], 0) + h[t - 1] / h[t - 1].norm()
        for t, v in acc.items():
            head.weight[t] += 2.0 * v / v.norm()
    model.lm_head = head
    return model, tok, chats


def per_turn_reference(model, tok, messages: list[dict]) -> list[list[float]]:
    """For each assistant turn j: encode the conversation up to and including turn j only, and run
    one forward pass per action prefix with a full softmax."""
    out = []
    for j, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        ids, _, turns = encode_conversation(tok, messages[: j + 1])
        turn = turns[-1]
        probs = []
        for s, e in token_spans(turn.offsets, segment(turn.content)):
            s, e = turn.start + s, turn.start + e
            with torch.no_grad():
                logits = model(input_ids=torch.tensor([ids[:e]])).logits[0]
            p = torch.softmax(logits[s - 1 : e - 1].double(), dim=-1)
            logp = [math.log(p[t - s, ids[t]].item()) for t in range(s, e)]
            probs.append(math.exp(sum(logp) / len(logp)))
        out.append(probs)
    return out


def test_multi_turn_scores_match_the_per_turn_prefix_reference(model_and_chats):
    model, tok, chats = model_and_chats
    scores, emb = score_samples(model, tok, chats, token_budget=300, progress=False)
    assert list(scores.columns) == [*SCORE_COLUMNS, "turn_probs"]
    assert (scores["status"] == "ok").all()
    spread = []
    for messages, (_, row) in zip(chats["messages"], scores.iterrows(), strict=True):
        want = per_turn_reference(model, tok, json.loads(messages))
        flat = [p for turn in want for p in turn]
        np.testing.assert_allclose(np.log(row["action_probs"]), np.log(flat), atol=1e-4)
        np.testing.assert_allclose(row["turn_probs"], [np.mean(t) for t in want], atol=1e-4)
        assert row["difficulty"] == pytest.approx(1 - np.mean(row["action_probs"]), abs=1e-12)
        spread.extend(flat)
    assert max(spread) > 0.5 and min(spread) < 0.1, "probabilities should cover a real range"
    assert scores["turn_probs"].map(len).tolist() == [2, 3, 1, 2, 2, 3]
    assert emb.shape == (len(chats), 64)


def test_only_assistant_tokens_are_scored(model_and_chats):
    _, tok, chats = model_and_chats
    from p3_pruning.encoding import encode

    for _, row in chats.iterrows():
        ids, spans = encode(tok, row)
        _, _, turns = encode_conversation(tok, json.loads(row["messages"]))
        inside = set().union(*(range(t.start, t.end - 1) for t in turns))  # minus end-of-turn
        assert all(set(range(s, e)) <= inside for s, e in spans)
        assert sum(e - s for s, e in spans) <= len(inside)


def test_one_exchange_conversation_scores_like_the_single_turn_sample(model_and_chats):
    model, tok, _ = model_and_chats
    prompt, response = "What is 12 + 7?", "12 + 7 = 19\nAnswer: 19"
    messages = json.dumps(
        [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]
    )
    single = pd.DataFrame({"sample_id": ["a"], "prompt": [prompt], "response": [response]})
    chat = single.assign(messages=[messages])
    s1, e1 = score_samples(model, tok, single, progress=False)
    s2, e2 = score_samples(model, tok, chat, progress=False)
    assert s1["action_probs"][0] == s2["action_probs"][0]
    assert s1["difficulty"][0] == s2["difficulty"][0]
    np.testing.assert_array_equal(e1, e2)
    assert (
        encode_pair(tok, prompt, response)[0] == encode_conversation(tok, json.loads(messages))[0]
    )


def test_single_turn_rows_of_a_mixed_table_are_unchanged(model_and_chats):
    model, tok, chats = model_and_chats
    alpaca, _ = load_samples(DATA / "alpaca_data.json", "alpaca")
    alone, emb_alone = score_samples(model, tok, alpaca, progress=False)
    mixed = pd.concat([alpaca.assign(messages=None), chats], ignore_index=True)
    both, emb_both = score_samples(model, tok, mixed, progress=False)
    n = len(alpaca)
    pd.testing.assert_frame_equal(both.iloc[:n][SCORE_COLUMNS], alone, atol=1e-6, rtol=0)
    np.testing.assert_allclose(emb_both[:n], emb_alone, atol=1e-5)
    assert both["turn_probs"].iloc[:n].map(len).eq(1).all()


def test_truncation_keeps_whole_leading_turns_and_bad_messages_fail_softly(model_and_chats):
    model, tok, chats = model_and_chats
    row = chats.iloc[[1]]  # three assistant turns
    full, _ = score_samples(model, tok, row, progress=False)
    ids, _, turns = encode_conversation(tok, json.loads(row["messages"].iloc[0]))
    cut, _ = score_samples(model, tok, row, max_length=turns[1].end, progress=False)
    assert bool(cut["truncated"][0]) and len(cut["turn_probs"][0]) == 2
    np.testing.assert_allclose(cut["turn_probs"][0], full["turn_probs"][0][:2], atol=1e-6)
    broken = chats.iloc[:2].copy()
    broken.loc[0, "messages"] = "[{]"
    scores, emb = score_samples(model, tok, broken, progress=False)
    assert scores["status"].tolist() == ["bad_messages", "ok"]
    assert scores["difficulty"][0] == np.inf and not emb[0].any()


def test_tokenizer_without_chat_template_uses_the_plain_fallback(model_and_chats):
    model, tok, chats = model_and_chats
    template, tok.chat_template = tok.chat_template, None
    try:
        scores, _ = score_samples(model, tok, chats.iloc[:2], progress=False)
        ids, _, turns = encode_conversation(tok, json.loads(chats["messages"][0]))
        text = tok.decode(ids)
    finally:
        tok.chat_template = template
    assert (scores["status"] == "ok").all()
    assert "Question: What is 12 + 7?\nAnswer:\n12 + 7 = 19" in text
    assert text.startswith("You are a patient maths tutor.\n\n")
