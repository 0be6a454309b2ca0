"""Loaders: GSM8K, MATH, APPS, generic JSONL/JSON/Parquet, hub ids; good records and every kind of bad."""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import sys
import types

import pandas as pd
import pytest

from p3_pruning.data import (
    QUARANTINE_COLUMNS,
    SAMPLE_COLUMNS,
    DataError,
    last_boxed,
    load_samples,
    validate_samples,
)

GSM = {
    "question": "Natalia sold clips to 48 friends in April, and half as many in May. How many in all?",
    "answer": "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
    "Natalia sold 48+24 = <<48+24=72>>72 clips altogether.\n#### 72",
}
MATH = {
    "problem": "Compute $\\frac{1}{2} + \\frac{1}{3}$.",
    "solution": "We have $\\frac{1}{2} + \\frac{1}{3} = \\boxed{\\frac{5}{6}}$.",
    "level": "Level 2",
    "type": "Prealgebra",
}
APPS = {
    "problem_id": 17,
    "question": "Read n and print n squared.",
    "solutions": json.dumps(["n = int(input())\nprint(n * n)", "print(int(input()) ** 2)"]),
    "input_output": json.dumps({"inputs": ["3\n", "4\n"], "outputs": ["9\n", "16\n"]}),
    "difficulty": "introductory",
    "starter_code": "",
}
GENERIC = {"key": "g1", "instruction": "Say hi.", "output": "Step 1\nhi", "label": 7}


def write_lines(path, lines) -> str:
    """Write JSONL: dicts are dumped, str/bytes written as they are (for malformed lines)."""
    chunks = []
    for line in lines:
        if isinstance(line, dict):
            line = json.dumps(line)
        chunks.append(line if isinstance(line, bytes) else line.encode("utf-8"))
    path.write_bytes(b"\n".join(chunks) + b"\n")
    return str(path)


def variant(record: dict, **changes) -> dict:
    out = {**record, **changes}
    return {k: v for k, v in out.items() if v is not DROP}


DROP = object()


# ----------------------------------------------------------------------------- good records
def test_gsm8k_strips_calculator_notes_and_keeps_final_line(tmp_path):
    second = variant(GSM, question="Big numbers?", answer="Add them.\n#### 1,250")
    path = write_lines(tmp_path / "gsm.jsonl", [GSM, second])
    samples, quarantined = load_samples(path, "gsm8k")
    assert quarantined.empty and list(quarantined.columns) == list(QUARANTINE_COLUMNS)
    assert list(samples.columns) == list(SAMPLE_COLUMNS)
    first = samples.iloc[0]
    assert first["response"] == (
        "Natalia sold 48/2 = 24 clips in May.\nNatalia sold 48+24 = 72 clips altogether.\n#### 72"
    )
    assert first["answer"] == "72" and first["source"] == "gsm8k"
    assert samples.iloc[1]["answer"] == "1250"
    assert samples.iloc[1]["response"].splitlines()[-1] == "#### 1250"
    expected = hashlib.sha1(f"{GSM['question']}\x1f{first['response']}".encode()).hexdigest()[:12]
    assert first["sample_id"] == f"gsm8k-{expected}"
    assert json.loads(first["meta"]) == {"file": "gsm.jsonl", "line": 1}
    # stable across runs, and the table passes the schema check
    again, _ = load_samples(path, "gsm8k")
    pd.testing.assert_frame_equal(samples, again)
    validate_samples(samples)


@pytest.mark.parametrize(
    ("solution", "answer"),
    [
        ("so $x = \\boxed{\\frac{a}{b}}$", "\\frac{a}{b}"),
        ("first \\boxed{1}, finally \\boxed{\\sqrt{\\frac{1}{2}}}.", "\\sqrt{\\frac{1}{2}}"),
        ("the set is \\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),
        ("answer: \\fbox{42}", "42"),
        ("$\\boxed 5$", "5"),
        ("\\boxed{ \\text{(B)} }", "\\text{(B)}"),
    ],
)
def test_last_boxed_handles_nesting(solution, answer):
    assert last_boxed(solution) == answer


@pytest.mark.parametrize(
    "solution", ["no box here", "\\boxed{\\frac{1}{2}", "\\boxed{}", "\\boxedx{3}"]
)
def test_last_boxed_none_when_absent_unclosed_or_empty(solution):
    assert last_boxed(solution) is None


@pytest.mark.parametrize("layout", ["list", "object", "jsonl"])
def test_math_json_layouts(tmp_path, layout):
    if layout == "list":
        other = variant(MATH, problem="Two?", solution="It is $\\boxed{2}$.", level="Level 1")
        path = tmp_path / "math.json"
        path.write_text(json.dumps([MATH, other]))
        expected = 2
    elif layout == "object":
        path = tmp_path / "math.json"
        path.write_text(json.dumps(MATH, indent=2))
        expected = 1
    else:
        path = tmp_path / "math.jsonl"
        write_lines(path, [MATH])
        expected = 1
    samples, _ = load_samples(path, "math")
    assert len(samples) == expected
    first = samples.iloc[0]
    assert first["answer"] == "\\frac{5}{6}"
    assert first["level"] == "Level 2" and first["source"] == "math"
    assert first["response"] == MATH["solution"]
    assert json.loads(first["meta"])["type"] == "Prealgebra"
    assert first["tests"] is None


def test_apps_record(tmp_path):
    with_starter = variant(
        APPS,
        problem_id=18,
        starter_code="class Solution:\n    def square(self, n):\n",
        input_output={"inputs": [[3]], "outputs": [9], "fn_name": "square"},
        difficulty="interview",
    )
    path = write_lines(tmp_path / "apps.jsonl", [APPS, with_starter])
    samples, _ = load_samples(path, "apps")
    first, second = samples.iloc[0], samples.iloc[1]
    assert first["sample_id"] == "apps-17" and second["sample_id"] == "apps-18"
    assert first["prompt"] == APPS["question"]
    assert first["response"] == "n = int(input())\nprint(n * n)"
    assert json.loads(first["tests"]) == {"inputs": ["3\n", "4\n"], "outputs": ["9\n", "16\n"]}
    assert first["level"] == "introductory" and first["answer"] is None
    assert json.loads(first["meta"])["n_solutions"] == 2
    assert second["prompt"] == APPS["question"] + "\n\nclass Solution:\n    def square(self, n):"
    assert json.loads(second["tests"]) == {"inputs": [[3]], "outputs": [9], "fn_name": "square"}
    assert second["level"] == "interview"


def test_generic_jsonl_with_mapping(tmp_path):
    nested = {"doc": {"q": "Nested?", "a": "yes"}, "uid": "x-1", "tests": {"inputs": [1]}}
    path = write_lines(tmp_path / "mine.jsonl", [GENERIC, variant(GENERIC, instruction="Say bye.")])
    columns = {"prompt": "instruction", "response": "output", "answer": "label", "source": "chat"}
    samples, _ = load_samples(path, "jsonl", columns=columns)
    assert samples["source"].tolist() == ["chat", "chat"]
    assert samples["sample_id"].str.startswith("chat-").all()
    assert samples.iloc[0]["answer"] == "7" and samples.iloc[0]["response"] == "Step 1\nhi"
    assert json.loads(samples.iloc[0]["meta"])["fields"] == {"key": "g1"}  # unmapped, kept

    nested_path = write_lines(tmp_path / "nested.jsonl", [nested])
    cols = {"prompt": "doc.q", "response": "doc.a", "sample_id": "uid"}
    row = load_samples(nested_path, "jsonl", columns=cols)[0].iloc[0]
    assert (row["prompt"], row["response"], row["sample_id"]) == ("Nested?", "yes", "nested-x-1")
    assert json.loads(row["tests"]) == {"inputs": [1]}


def test_generic_parquet_and_gzip(tmp_path):
    frame = pd.DataFrame(
        {"prompt": ["a?", "b?"], "response": ["1\n2", "3"], "level": [1, 2], "id": [10, 11]}
    )
    frame.to_parquet(tmp_path / "t.parquet")
    samples, _ = load_samples(tmp_path / "t.parquet", "jsonl")
    assert samples["sample_id"].tolist() == ["t-10", "t-11"]
    assert samples["level"].tolist() == ["1", "2"]
    assert json.loads(samples.iloc[1]["meta"])["line"] == 2

    gz = tmp_path / "gsm.jsonl.gz"
    gz.write_bytes(gzip.compress((json.dumps(GSM) + "\n").encode()))
    assert load_samples(gz, "gsm8k")[0].iloc[0]["answer"] == "72"


# ----------------------------------------------------------------------------- bad records
# (source, good record, bad line as written, field named, words in the reason)
BAD = [
    ("gsm8k", GSM, '{"question": "x", "answer": "#### 1"', "(record)", "invalid JSON"),
    ("gsm8k", GSM, variant(GSM, question=DROP), "question", "missing"),
    ("gsm8k", GSM, variant(GSM, question="  "), "question", "empty"),
    ("gsm8k", GSM, variant(GSM, question=5), "question", "expected a string"),
    ("gsm8k", GSM, variant(GSM, answer="It is 5."), "answer", "####"),
    ("gsm8k", GSM, variant(GSM, answer="So.\n####   "), "answer", "####"),
    ("gsm8k", GSM, b'{"question": "caf\xe9?", "answer": "#### 1"}', "(record)", "UTF-8"),
    ("gsm8k", GSM, "[1, 2]", "(record)", "JSON object"),
    ("gsm8k", GSM, GSM, "(record)", "duplicate"),
    ("math", MATH, variant(MATH, solution="It is 5."), "solution", "boxed"),
    ("math", MATH, variant(MATH, solution="\\boxed{\\frac{1}{2}"), "solution", "boxed"),
    ("math", MATH, variant(MATH, problem=DROP), "problem", "missing"),
    ("math", MATH, variant(MATH, level=5), "level", "expected a string"),
    ("math", variant(MATH, id="m1"), variant(MATH, id="m1", problem="Other?"), "id", "duplicate"),
    (
        "apps",
        APPS,
        variant(APPS, problem_id=2, input_output="{inputs: [1]"),
        "input_output",
        "unparseable",
    ),
    ("apps", APPS, variant(APPS, problem_id=2, input_output=""), "input_output", "missing"),
    (
        "apps",
        APPS,
        variant(APPS, problem_id=2, input_output='{"inputs": [1]}'),
        "input_output",
        "outputs",
    ),
    (
        "apps",
        APPS,
        variant(APPS, problem_id=2, input_output='{"inputs": [1], "outputs": []}'),
        "input_output",
        "1 inputs but 0 outputs",
    ),
    ("apps", APPS, variant(APPS, problem_id=2, solutions="['x']"), "solutions", "unparseable"),
    ("apps", APPS, variant(APPS, problem_id=2, solutions="[]"), "solutions", "empty"),
    ("apps", APPS, variant(APPS, problem_id=2, solutions='{"a": 1}'), "solutions", "list"),
    ("apps", APPS, variant(APPS, problem_id=2, question=["q"]), "question", "expected a string"),
    ("apps", APPS, APPS, "problem_id", "duplicate id '17'"),
    ("apps", APPS, variant(APPS, problem_id=True), "problem_id", "expected a string or integer"),
    ("jsonl", GENERIC, variant(GENERIC, key="g9", output=DROP), "output", "missing"),
    ("jsonl", GENERIC, variant(GENERIC, key="g9", output=""), "output", "empty"),
    (
        "jsonl",
        GENERIC,
        variant(GENERIC, key="g9", label=[1]),
        "label",
        "expected a string or number",
    ),
    ("jsonl", GENERIC, b'{"instruction": "\xff", "output": "x"}', "(record)", "UTF-8"),
    ("jsonl", GENERIC, variant(GENERIC, key=DROP, output="other"), "key", "missing"),
    ("jsonl", GENERIC, variant(GENERIC, output="other"), "key", "duplicate id 'g1'"),
]
COLUMNS = {
    "jsonl": {"prompt": "instruction", "response": "output", "answer": "label", "sample_id": "key"}
}


def _bad_file(tmp_path, source, good, bad) -> str:
    other = variant(
        good,
        **{k: f"{v} again" for k, v in good.items() if k in ("question", "problem", "instruction")},
    )
    if "problem_id" in other:
        other["problem_id"] = 99
    if "id" in other:
        other["id"] = "other"
    if "key" in other:
        other["key"] = "g2"
    return write_lines(tmp_path / f"{source}.jsonl", [good, "", other, bad])


@pytest.mark.parametrize(("source", "good", "bad", "field", "reason"), BAD)
def test_bad_record_raises_naming_file_line_field(tmp_path, source, good, bad, field, reason):
    path = _bad_file(tmp_path, source, good, bad)
    with pytest.raises(DataError) as info:
        load_samples(path, source, columns=COLUMNS.get(source))
    error = info.value
    assert (error.file, error.line, error.field) == (path, 4, field)
    assert reason in error.reason
    message = str(error)
    assert path in message and "line 4" in message and f"field '{field}'" in message
    assert isinstance(error, ValueError)


@pytest.mark.parametrize(("source", "good", "bad", "field", "reason"), BAD)
def test_bad_record_quarantined_and_counted(tmp_path, caplog, source, good, bad, field, reason):
    path = _bad_file(tmp_path, source, good, bad)
    with caplog.at_level(logging.INFO, logger="p3_pruning.data.sources"):
        samples, quarantined = load_samples(
            path, source, on_bad_record="quarantine", columns=COLUMNS.get(source)
        )
    assert len(samples) == 2  # the two good records, in order
    assert [json.loads(m)["line"] for m in samples["meta"]] == [1, 3]
    assert len(quarantined) == 1
    row = quarantined.iloc[0]
    assert (row["file"], int(row["line"]), row["field"]) == (path, 4, field)
    assert reason in row["reason"]
    assert row["record"]  # the raw text is kept
    assert "3 records → 2 samples, 1 quarantined" in caplog.text
    assert "quarantined 1 of 3 records" in caplog.text


def test_quarantine_keeps_every_bad_record(tmp_path):
    lines = [
        GSM,
        "not json",
        variant(GSM, answer="no final"),
        variant(GSM, question="ok?"),
        variant(GSM, question=DROP),
    ]
    path = write_lines(tmp_path / "g.jsonl", lines)
    samples, quarantined = load_samples(path, "gsm8k", on_bad_record="quarantine")
    assert len(samples) + len(quarantined) == len(lines)
    assert quarantined["line"].tolist() == [2, 3, 5]
    assert quarantined["field"].tolist() == ["(record)", "answer", "question"]
    assert quarantined["line"].dtype == "int64"


@pytest.mark.parametrize("mode", ["raise", "quarantine"])
@pytest.mark.parametrize(
    ("name", "content"),
    [("e.jsonl", b""), ("e.jsonl", b"\n  \n"), ("e.json", b"[]"), ("e.json", b" ")],
)
def test_empty_file_is_a_whole_file_error(tmp_path, mode, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError, match="empty") as info:
        load_samples(path, "gsm8k", on_bad_record=mode)
    assert info.value.file == str(path) and info.value.field == "(file)"


def test_whole_file_json_errors_name_the_line(tmp_path):
    broken = tmp_path / "m.json"
    broken.write_text('[\n  {"problem": "x",\n   "solution": }\n]')
    with pytest.raises(DataError, match="invalid JSON") as info:
        load_samples(broken, "math", on_bad_record="quarantine")
    assert info.value.line == 3
    bad_utf8 = tmp_path / "u.json"
    bad_utf8.write_bytes(b'[\n{"problem": "\xff"}]')
    with pytest.raises(DataError, match="UTF-8") as info:
        load_samples(bad_utf8, "math")
    assert info.value.line == 2


def test_parquet_wrong_type_is_caught(tmp_path):
    frame = pd.DataFrame({"prompt": [1, 2], "response": ["x", "y"]})
    frame.to_parquet(tmp_path / "p.parquet")
    with pytest.raises(DataError, match="expected a string, found int") as info:
        load_samples(tmp_path / "p.parquet", "jsonl")
    assert (info.value.line, info.value.field) == (1, "prompt")


# ----------------------------------------------------------------------------- arguments, paths, hub
def test_argument_errors(tmp_path):
    path = write_lines(tmp_path / "g.jsonl", [GSM])
    with pytest.raises(ValueError, match="source must be one of"):
        load_samples(path, "gsm")
    with pytest.raises(ValueError, match="on_bad_record"):
        load_samples(path, "gsm8k", on_bad_record="skip")
    with pytest.raises(ValueError, match="only used with source='jsonl'"):
        load_samples(path, "gsm8k", columns={"prompt": "question"})
    with pytest.raises(ValueError, match="unknown key"):
        load_samples(path, "jsonl", columns={"question": "prompt"})
    (tmp_path / "g.csv").write_text("a,b\n")
    with pytest.raises(DataError, match="unsupported file type '.csv'"):
        load_samples(tmp_path / "g.csv", "jsonl")


def test_missing_file_and_hub_without_datasets(tmp_path, monkeypatch):
    with pytest.raises(DataError, match="file not found") as info:
        load_samples(tmp_path / "nope.jsonl", "gsm8k")
    assert "nope.jsonl" in str(info.value)
    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets → ImportError
    with pytest.raises(DataError, match="hub dataset id.*network.*`datasets` package"):
        load_samples("openai/gsm8k:main@test", "gsm8k")


def test_hub_id_goes_through_the_same_parser(monkeypatch):
    calls = []

    def load_dataset(repo, config, split):
        calls.append((repo, config, split))
        return [GSM, variant(GSM, answer="none")]

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    samples, quarantined = load_samples(
        "openai/gsm8k:main@test", "gsm8k", on_bad_record="quarantine"
    )
    assert calls == [("openai/gsm8k", "main", "test")]
    assert samples.iloc[0]["answer"] == "72"
    assert quarantined["line"].tolist() == [2] and quarantined["field"].tolist() == ["answer"]
