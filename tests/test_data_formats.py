"""Alpaca, chat (OpenAI messages, ShareGPT) and datasets folders → the samples table."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pandas as pd
import pytest

from p3_pruning.data import SAMPLE_COLUMNS, DataError, load_samples, validate_samples

DATA = Path(__file__).parent / "data"


def test_stanford_alpaca_json_loads_as_is():
    records = json.loads((DATA / "alpaca_data.json").read_text())
    samples, quarantined = load_samples(DATA / "alpaca_data.json", "alpaca")
    assert quarantined.empty and len(samples) == len(records)
    assert list(samples.columns) == list(SAMPLE_COLUMNS)  # single-turn: no messages column
    validate_samples(samples)
    with_input = samples.iloc[1]
    assert with_input["prompt"] == f"{records[1]['instruction']}\n\n{records[1]['input']}"
    assert samples.iloc[0]["prompt"] == records[0]["instruction"]  # empty input: no blank line
    assert samples["response"].tolist() == [r["output"] for r in records]
    assert samples["source"].unique().tolist() == ["alpaca_data"]
    assert samples["sample_id"].is_unique
    assert json.loads(samples.iloc[3]["meta"]) == {"file": "alpaca_data.json", "line": 4}


def test_alpaca_column_mapping(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text(json.dumps({"q": "Say hi.", "ctx": "politely", "a": "Hello!", "k": 3}) + "\n")
    samples, _ = load_samples(
        path, "alpaca", columns={"instruction": "q", "input": "ctx", "output": "a"}
    )
    assert samples.iloc[0][["prompt", "response"]].tolist() == ["Say hi.\n\npolitely", "Hello!"]
    assert json.loads(samples.iloc[0]["meta"])["fields"] == {"k": 3}


def test_chat_jsonl_keeps_every_turn():
    samples, _ = load_samples(DATA / "chat.jsonl", "chat")
    assert list(samples.columns) == [*SAMPLE_COLUMNS, "messages"]
    validate_samples(samples)
    first = samples.iloc[0]
    turns = json.loads(first["messages"])
    assert [t["role"] for t in turns] == ["system", "user", "assistant", "user", "assistant"]
    # prompt/response are the last exchange
    assert first["prompt"] == "And 19 times 2?" and first["response"] == "19 * 2 = 38\nAnswer: 38"
    assert first["sample_id"] == "chat-c1"
    assert json.loads(first["meta"])["turns"] == 5


def test_sharegpt_roles_are_normalised_and_trailing_turns_trimmed():
    samples, _ = load_samples(DATA / "sharegpt.json", "chat")
    turns = [json.loads(m) for m in samples["messages"]]
    assert [t["role"] for t in turns[0]] == ["system", "user", "assistant", "user", "assistant"]
    assert turns[1] == [
        {"role": "user", "content": "Spell 'cat' backwards."},
        {"role": "assistant", "content": "tac"},
    ]
    assert json.loads(samples.iloc[1]["meta"])["trimmed_turns"] == 1


def turn(role, content):
    return {"role": role, "content": content}


@pytest.mark.parametrize(
    ("record", "field", "reason"),
    [
        ({"messages": [turn("user", "hi")]}, "messages", "no assistant turn"),
        ({"messages": [turn("user", "hi"), turn("bot", "x")]}, "messages[1].role", "unknown role"),
        (
            {"messages": [turn("user", "  "), turn("assistant", "x")]},
            "messages[0].content",
            "empty",
        ),
        (
            {"messages": [turn("user", ["x"]), turn("assistant", "y")]},
            "messages[0].content",
            "list",
        ),
        ({"messages": [turn("user", "a"), "b"]}, "messages[1]", "expected an object"),
        ({"messages": "not json"}, "messages", "unparseable JSON"),
        ({"messages": 3}, "messages", "expected a list of turns"),
        (
            {"conversations": [{"from": "human", "value": "a"}, {"from": "gpt"}]},
            "conversations[1].value",
            "missing content",
        ),
        (
            {
                "messages": [
                    turn("user", "a"),
                    turn("assistant", "b"),
                    turn("system", "c"),
                    turn("assistant", "d"),
                ]
            },
            "messages[2].role",
            "only come first",
        ),
        ({"messages": [turn("assistant", "hello")]}, "messages", "no user turn"),
    ],
)
def test_bad_conversations_name_file_record_and_field(tmp_path, record, field, reason):
    good = {"messages": [turn("user", "ok?"), turn("assistant", "ok")]}
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps(record) + "\n")
    with pytest.raises(DataError, match=reason) as info:
        load_samples(path, "chat")
    assert (info.value.file, info.value.line, info.value.field) == (str(path), 2, field)
    samples, quarantined = load_samples(path, "chat", on_bad_record="quarantine")
    assert len(samples) == 1
    assert quarantined[["line", "field"]].values.tolist() == [[2, field]]


def test_bad_alpaca_records(tmp_path):
    path = tmp_path / "a.json"
    path.write_text(
        json.dumps([{"instruction": "x", "output": ""}, {"instruction": 1, "output": "y"}])
    )
    _, quarantined = load_samples(path, "alpaca", on_bad_record="quarantine")
    assert quarantined[["line", "field"]].values.tolist() == [[1, "output"], [2, "instruction"]]


def test_validate_checks_the_messages_column():
    samples, _ = load_samples(DATA / "chat.jsonl", "chat")
    broken = samples.copy()
    broken.loc[2, "messages"] = json.dumps([turn("user", "x")])
    with pytest.raises(DataError, match="no assistant turn") as info:
        validate_samples(broken)
    assert (info.value.line, info.value.field) == (3, "messages")
    # single-turn rows in the same table have a null messages cell
    mixed = pd.concat([samples, load_samples(DATA / "alpaca_data.json", "alpaca")[0]])
    assert validate_samples(mixed)["messages"].isna().sum() == 10


@pytest.mark.parametrize("as_dict", [False, True])
def test_datasets_folder_loads_like_the_file(tmp_path, as_dict):
    records = [json.loads(line) for line in (DATA / "chat.jsonl").read_text().splitlines()]
    dataset = datasets.Dataset.from_list(records)
    if as_dict:
        dataset = datasets.DatasetDict({"train": dataset, "test": dataset.select([0])})
    dataset.save_to_disk(str(tmp_path / "chat"))
    from_disk, _ = load_samples(tmp_path / "chat", "chat")
    from_file, _ = load_samples(DATA / "chat.jsonl", "chat")
    columns = ["sample_id", "prompt", "response", "messages"]
    pd.testing.assert_frame_equal(from_disk[columns], from_file[columns])


def test_folder_that_is_not_a_dataset(tmp_path):
    with pytest.raises(DataError, match="not a Hugging Face datasets folder"):
        load_samples(tmp_path, "chat")
    dd = datasets.DatasetDict(
        {s: datasets.Dataset.from_list([{"instruction": "a", "output": "b"}]) for s in ("x", "y")}
    )
    dd.save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(DataError, match="none is 'train'"):
        load_samples(tmp_path / "dd", "alpaca")
