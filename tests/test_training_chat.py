"""Training on conversations: every token but the assistant turns' is masked out of the loss."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from p3_pruning.data import load_samples
from p3_pruning.models import load_model
from p3_pruning.training import IGNORE_INDEX, build_features

DATA = Path(__file__).parent / "data"


def test_only_assistant_turns_and_their_end_of_turn_are_targets():
    _, tok = load_model("tiny-random")
    chats, _ = load_samples(DATA / "chat.jsonl", "chat")
    features = build_features(tok, chats, max_length=1024)
    for feature, messages in zip(features, chats["messages"], strict=True):
        turns = [m["content"] for m in json.loads(messages) if m["role"] == "assistant"]
        targets = [t for t in feature["labels"] if t != IGNORE_INDEX]
        want = [i for text in turns for i in tok(text, add_special_tokens=False)["input_ids"]]
        assert [t for t in targets if t != tok.eos_token_id] == want
        assert targets.count(tok.eos_token_id) == len(turns)
        # user and system text never is a target
        masked = tok.decode(
            [
                i
                for i, lab in zip(feature["input_ids"], feature["labels"], strict=True)
                if lab == IGNORE_INDEX
            ]
        )
        users = [m["content"] for m in json.loads(messages) if m["role"] == "user"]
        assert all(u in masked for u in users)
    everything = build_features(tok, chats, max_length=1024, loss_on="all")
    assert all(f["labels"] == f["input_ids"] for f in everything)


def test_one_exchange_conversation_trains_like_the_single_turn_row():
    _, tok = load_model("tiny-random")
    single = pd.DataFrame(
        {"sample_id": ["a"], "prompt": ["What is 2 + 2?"], "response": ["2 + 2 = 4\nAnswer: 4"]}
    )
    turns = [
        {"role": "user", "content": "What is 2 + 2?"},
        {"role": "assistant", "content": "2 + 2 = 4\nAnswer: 4"},
    ]
    chat = single.assign(messages=[json.dumps(turns)])
    assert build_features(tok, single) == build_features(tok, chat)
    # a null messages cell is a single-turn row
    assert build_features(tok, single.assign(messages=[None])) == build_features(tok, single)
