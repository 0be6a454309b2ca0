"""Segmenters, token ↔ action spans, robustness, determinism and embeddings of the difficulty scorer."""

import copy

import numpy as np
import pandas as pd
import pytest

from p3_pruning.chat import encode_pair
from p3_pruning.encoding import ScoringError, encode, length_batches, token_spans
from p3_pruning.scoring import TOKEN_BUDGET, default_token_budget, score_samples
from p3_pruning.segment import segment
from test_scoring_reference import make_samples, tiny


def pieces(text, *args, **kwargs):
    return [text[s:e] for s, e in segment(text, *args, **kwargs)]


# --- segmenters ------------------------------------------------------------------------------


def test_newline_segmenter_splits_on_newline_runs_and_drops_blank_pieces():
    text = "\nStep 1: 2+3 = 5\n\n\n  \nStep 2.\nAnswer: 5\n"
    assert pieces(text) == ["Step 1: 2+3 = 5", "Step 2.", "Answer: 5"]
    assert segment("one line") == [(0, 8)]
    assert segment("\n\n") == []


def test_sentence_segmenter_splits_after_end_punctuation_but_not_decimals():
    text = 'It costs 3.5 dollars. Then "add 2!" Next?\nDone'
    assert pieces(text, "sentence") == ["It costs 3.5 dollars.", 'Then "add 2!"', "Next?", "Done"]


def test_code_segmenter_gives_logical_lines_and_comment_lines():
    code = (
        "import sys\n\n# read input\ndef f(a,\n      b):\n    return a + b  # sum\nprint(f(1, 2))\n"
    )
    assert pieces(code, "code") == [
        "import sys",
        "# read input",
        "def f(a,\n      b):",
        "return a + b  # sum",
        "print(f(1, 2))",
    ]


def test_code_segmenter_falls_back_to_lines_for_text_python_rejects():
    text = 'print("unterminated\nx = (1,\n'
    assert pieces(text, "code") == ['print("unterminated', "x = (1,"]


def test_regex_segmenter_and_option_errors():
    assert pieces("a; b;c", "regex", pattern=r";\s*") == ["a", "b", "c"]
    assert pieces("abc", "regex", pattern=r"x*") == ["abc"]  # zero-width matches split nothing
    with pytest.raises(ValueError, match="pattern"):
        segment("a", "regex")
    with pytest.raises(ValueError, match="not a valid regex"):
        segment("a", "regex", pattern="(")
    with pytest.raises(ValueError, match="unknown segmenter 'words'"):
        segment("a", "words")


# --- tokens ↔ actions ------------------------------------------------------------------------


def test_token_spans_overlap_rule():
    # tokens: "ab" "c." ".\n" "\n" "de" "" (end-of-turn); actions "abc." [0,4) and "de" [6,8)
    offsets = [(0, 2), (2, 4), (3, 5), (5, 6), (6, 8), (8, 8)]
    assert token_spans(offsets, [(0, 4), (6, 8)]) == [(0, 3), (4, 5)]
    # a token across the separator belongs to both actions it overlaps
    assert token_spans([(0, 3), (3, 5)], [(0, 1), (2, 5)]) == [(0, 1), (0, 2)]
    # an action no token overlaps is left out
    assert token_spans([(0, 1), (4, 5)], [(0, 1), (2, 3), (4, 5)]) == [(0, 1), (1, 2)]


@pytest.mark.parametrize("segmenter", ["newline", "sentence"])
def test_encode_spans_decode_to_the_actions(segmenter):
    _, tok = tiny()
    response = "First, 12 + 7 = 19. Then 19 * 2 = 38.\n\nSo the total is 38!\nAnswer: 38"
    sample = {"prompt": "Compute (12 + 7) * 2.", "response": response}
    ids, spans = encode(tok, sample, segmenter=segmenter)
    full, prompt_len, _ = encode_pair(tok, sample["prompt"], response)
    assert ids == full  # the same ids training sees
    assert all(prompt_len <= s < e <= len(ids) - 1 for s, e in spans)  # eos is in no action
    actions = pieces(response, segmenter)
    assert len(spans) == len(actions) == (3 if segmenter == "newline" else 4)
    for (s, e), action in zip(spans, actions, strict=True):
        text = tok.decode(ids[s:e])
        assert action in text
        assert text.replace(action, "", 1).strip() == ""  # only separator characters extra


def test_encode_truncates_at_an_action_boundary_and_rejects_bad_samples():
    _, tok = tiny()
    response = "\n".join(f"Line {i}: {i} + {i} = {2 * i}" for i in range(40))
    sample = {"prompt": "Double them.", "response": response}
    ids, spans = encode(tok, sample, max_length=None)
    cut, cut_spans = encode(tok, sample, max_length=200)
    assert len(cut) <= 200 and cut == ids[: len(cut)]
    assert cut_spans == [sp for sp in spans if sp[1] <= 200] and cut_spans[-1][1] == len(cut)
    with pytest.raises(ScoringError) as err:
        encode(tok, sample, segmenter=lambda text: [])
    assert err.value.status == "no_actions"
    for bad, status in [
        ({"prompt": "q", "response": ""}, "empty_response"),
        ({"prompt": "q", "response": "\n \n"}, "empty_response"),
        ({"prompt": None, "response": "a"}, "missing_prompt"),
        ({"prompt": "q" * 800, "response": "a"}, "too_long"),
    ]:
        with pytest.raises(ScoringError) as err:
            encode(tok, bad, max_length=100)
        assert err.value.status == status


def test_length_batches_respect_the_budget_and_cover_every_index():
    lengths = [5, 50, 7, 30, 31, 120, 6, 8]
    batches = length_batches(lengths, 64)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 64
    assert [lengths[b[0]] for b in batches] == sorted(
        (lengths[b[0]] for b in batches), reverse=True
    )


# --- score_samples ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scored():
    model, tok = tiny()
    samples = make_samples(8, seed=3)
    return model, tok, samples, score_samples(model, tok, samples, token_budget=600, progress=False)


def test_robustness_rows_are_kept_in_order_with_inf_and_a_reason(scored):
    model, tok, samples, _ = scored
    bad = pd.DataFrame(
        {
            "sample_id": ["empty", "blank", "noprompt", "long", "good", "nan"],
            "prompt": ["q", "q", None, "q", "What is 1 + 1?", "q"],
            "response": ["", "\n \n", "a", "x\n" + "word " * 400, "1 + 1 = 2\nAnswer: 2", np.nan],
        }
    )
    scores, emb = score_samples(model, tok, bad, max_length=128, progress=False)
    assert scores["sample_id"].tolist() == bad["sample_id"].tolist()
    assert scores["status"].tolist() == [
        "empty_response",
        "empty_response",
        "missing_prompt",
        "ok",
        "ok",
        "empty_response",
    ]
    assert scores.loc[3, "truncated"] and scores.loc[3, "n_actions"] == 1  # "x" kept, rest cut
    assert scores.loc[3, "n_tokens"] > 128
    failed = scores["status"] != "ok"
    assert np.isinf(scores.loc[failed, "difficulty"]).all()
    assert (scores.loc[failed, "reason"] != "").all() and (
        scores.loc[~failed, "reason"] == ""
    ).all()
    assert not scores["difficulty"].isna().any()
    assert np.all(emb[failed.to_numpy()] == 0)
    np.testing.assert_allclose(np.linalg.norm(emb[~failed.to_numpy()], axis=1), 1.0, atol=1e-5)

    # a separator pattern that swallows the whole response leaves no action
    none, _ = score_samples(
        model, tok, bad.iloc[[4]], segmenter="regex", pattern=r"[\s\S]+", progress=False
    )
    assert none.loc[0, "status"] == "no_actions" and np.isinf(none.loc[0, "difficulty"])
    too_long, _ = score_samples(model, tok, bad.iloc[[3]], max_length=40, progress=False)
    assert too_long.loc[0, "status"] == "too_long" and np.isinf(too_long.loc[0, "difficulty"])


def test_missing_columns_and_bad_options_are_named(scored):
    model, tok, samples, _ = scored
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['response'\]"):
        score_samples(model, tok, samples.drop(columns="response"), progress=False)
    with pytest.raises(ValueError, match="unknown embed 'mean'"):
        score_samples(model, tok, samples, embed="mean", progress=False)
    with pytest.raises(ValueError, match="token_budget"):
        score_samples(model, tok, samples, token_budget=0, progress=False)


def test_tokenizer_without_pad_token_scores_the_same(scored):
    model, tok, samples, (scores, emb) = scored
    no_pad = copy.deepcopy(tok)
    no_pad.pad_token = None
    assert no_pad.pad_token_id is None
    again, emb2 = score_samples(model, no_pad, samples, token_budget=600, progress=False)
    assert (again["status"] == "ok").all()
    np.testing.assert_allclose(
        np.concatenate(again["action_probs"].tolist()),
        np.concatenate(scores["action_probs"].tolist()),
        rtol=1e-6,
    )
    np.testing.assert_allclose(emb2, emb, atol=1e-6)


def test_same_inputs_same_scores_and_shapes(scored):
    model, tok, samples, (scores, emb) = scored
    again, emb2 = score_samples(model, tok, samples, token_budget=600, progress=False)
    pd.testing.assert_frame_equal(scores, again)
    np.testing.assert_array_equal(emb, emb2)
    assert emb.dtype == np.float32 and emb.shape == (len(samples), 64)
    assert list(scores.columns) == [
        "sample_id",
        "difficulty",
        "n_actions",
        "n_tokens",
        "action_probs",
        "status",
        "reason",
        "truncated",
    ]
    assert (scores["n_actions"] == scores["action_probs"].map(len)).all()
    assert ((scores["difficulty"] >= 0) & (scores["difficulty"] <= 1)).all()


def test_prompt_embedding_depends_on_the_prompt_only(scored):
    model, tok, samples, _ = scored
    twins = pd.DataFrame(
        {
            "sample_id": ["a", "b", "c"],
            "prompt": ["Add 3 and 4.", "Add 3 and 4.", "Multiply 6 by 7."],
            "response": ["3 + 4 = 7\nAnswer: 7", "4 + 3 = 7\nSo 7.\nAnswer: 7", "6 * 7 = 42"],
        }
    )
    emb = {
        m: score_samples(model, tok, twins, embed=m, progress=False)[1] for m in ("prompt", "all")
    }
    np.testing.assert_allclose(emb["prompt"][0], emb["prompt"][1], atol=1e-5)  # despite padding
    assert np.abs(emb["prompt"][0] - emb["prompt"][2]).max() > 1e-3
    assert np.abs(emb["all"][0] - emb["all"][1]).max() > 1e-3
    probs = score_samples(model, tok, twins, embed="prompt_probs", progress=False)[1]
    assert probs.shape == (3, 30) and (probs >= 0).all() and (probs <= 1).all()
    assert (np.diff(probs, axis=1) >= 0).all()  # ascending, prompts here exceed 30 tokens


def test_a_failing_batch_is_retried_in_halves_and_only_the_culprit_fails(scored, monkeypatch):
    import p3_pruning.scoring as scoring

    model, tok, samples, (scores, _) = scored
    culprit = len(encode(tok, samples.iloc[2])[0])
    real = scoring._score_batch

    def flaky(policy, items, *args):
        if any(len(it.input_ids) == culprit for it in items):
            raise RuntimeError("out of memory")
        return real(policy, items, *args)

    monkeypatch.setattr(scoring, "_score_batch", flaky)
    again, emb = score_samples(model, tok, samples, token_budget=600, progress=False)
    bad = again["status"] == "error"
    assert bad.tolist() == [len(encode(tok, r)[0]) == culprit for _, r in samples.iterrows()]
    assert again.loc[bad, "reason"].str.contains("out of memory").all()
    assert np.isinf(again.loc[bad, "difficulty"]).all() and np.all(emb[bad.to_numpy()] == 0)
    np.testing.assert_allclose(again.loc[~bad, "difficulty"], scores.loc[~bad, "difficulty"])


def test_default_token_budget_follows_the_device_and_batching_does_not_change_scores(scored):
    model, tok, samples, (scores, embeddings) = scored
    assert default_token_budget(model) == TOKEN_BUDGET["cpu"]
    again, emb = score_samples(model, tok, samples, progress=False)  # default budget: other batches
    np.testing.assert_allclose(again["difficulty"], scores["difficulty"], atol=1e-5)
    np.testing.assert_allclose(emb, embeddings, atol=1e-5)
