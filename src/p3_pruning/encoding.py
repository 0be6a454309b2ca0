"""Encoding a sample for the scorer: its token ids and the token range of every action.

``encode(tokenizer, sample)`` gives the exact ids ``scoring.score_samples`` feeds the model and each
action's ``[start, end)`` token range in them; ``encode_fields`` is the same on a row's fields and
returns the ``Encoded`` the scorer batches (``length_batches``). A sample that cannot be encoded
raises ``ScoringError``, whose ``status`` is the reason code of the scores table.

Token ↔ action rule: a response token belongs to every action whose characters its offset span
overlaps. Tokens made only of separator characters (e.g. ``\\n``) are context and not scored; a
token that straddles a separator and an action (``.\\n``) is scored with that action; a token that
overlaps two actions (rare: a merge across a separator) is scored in both. The end-of-turn token
is in no action.

Conversations (a non-null ``messages``): the whole conversation is encoded with the model's chat
template (``chat.encode_conversation``), every assistant turn is split into actions by the same
segmenter, and ``Encoded.turn_actions`` counts the scored actions per assistant turn.

Length policy (``max_length``): a sequence longer than ``max_length`` tokens keeps its prompt and
the leading actions that end within the limit; the kept actions are scored and the row is flagged
``truncated``. If no action fits, the row gets status ``too_long``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from p3_pruning.chat import DEFAULT_SYSTEM, encode_conversation, encode_pair
from p3_pruning.segment import Span, get_segmenter

# Library default, equal to conf/base's scoring.max_length (tests/test_defaults.py); a Kedro run
# passes its own.
MAX_LENGTH = 512


class ScoringError(ValueError):
    """A sample that cannot be scored; ``status`` is the reason code written to the scores table."""

    def __init__(self, status: str, reason: str, n_tokens: int = 0):
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.n_tokens = n_tokens


@dataclass(frozen=True)
class Encoded:
    """One sample as fed to the model: ids, action token ranges ``[start, end)`` in them, prompt length."""

    input_ids: list[int]
    action_spans: list[Span]
    prompt_len: int
    n_tokens: int  # length of the full encoding, before any truncation
    truncated: bool
    turn_actions: tuple[int, ...] | None = None  # conversations: scored actions per assistant turn


def token_spans(offsets: Sequence[Span], char_spans: Sequence[Span]) -> list[Span]:
    """Token ranges ``[start, end)`` of each character span, by offset overlap (see module doc).

    ``offsets[i]`` is the character span of token ``i``; empty-span tokens overlap nothing. A character
    span that no token overlaps is left out.
    """
    out, j, n = [], 0, len(offsets)
    for a0, a1 in char_spans:
        while j < n and (offsets[j][1] <= a0 or offsets[j][0] == offsets[j][1]):
            j += 1
        end = j
        while end < n and offsets[end][0] < a1:
            end += 1
        if end > j:
            out.append((j, end))
    return out


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA


def _truncate(ids, spans, prompt_len, max_length, turn_actions=None) -> Encoded:
    """Keep the leading actions that end within ``max_length`` (module doc: length policy)."""
    n_tokens = len(ids)
    if max_length is None or n_tokens <= max_length:
        return Encoded(list(ids), spans, prompt_len, n_tokens, False, turn_actions)
    kept = [sp for sp in spans if sp[1] <= max_length]
    if not kept:
        raise ScoringError(
            "too_long",
            f"{n_tokens} tokens (prompt {prompt_len}) and no action ends within "
            f"max_length={max_length}",
            n_tokens,
        )
    if turn_actions is not None:
        left, counts = len(kept), []
        for count in turn_actions:
            if left <= 0:
                break
            counts.append(min(count, left))
            left -= count
        turn_actions = tuple(counts)
    return Encoded(list(ids[: kept[-1][1]]), kept, prompt_len, n_tokens, True, turn_actions)


def _encode_conversation(
    tokenizer, messages, split: Callable[[str], list[Span]], *, system, max_length
) -> Encoded:
    try:
        turns = json.loads(messages) if isinstance(messages, str) else list(messages)
        ids, prompt_len, assistant = encode_conversation(tokenizer, turns, system=system)
    except (json.JSONDecodeError, TypeError, KeyError) as exc:
        raise ScoringError("bad_messages", f"messages is not a list of turns ({exc})") from exc
    except ValueError as exc:
        raise ScoringError("template", str(exc)) from exc
    spans, counts = [], []
    for turn in assistant:
        found = token_spans(turn.offsets, split(turn.content))
        spans.extend((turn.start + s, turn.start + e) for s, e in found)
        counts.append(len(found))
    if not spans:
        raise ScoringError("no_actions", "no assistant turn has an action")
    return _truncate(ids, spans, prompt_len, max_length, tuple(counts))


def encode_rows(tokenizer, samples, split, *, system, max_length) -> list:
    """Each row of a samples table (``prompt``, ``response``, optional ``messages``) through
    :func:`encode_fields`, in row order: its ``Encoded``, or the ``ScoringError`` that refused it."""
    conversations = samples["messages"] if "messages" in samples.columns else [None] * len(samples)
    out: list = []
    for prompt, response, messages in zip(
        samples["prompt"], samples["response"], conversations, strict=True
    ):
        try:
            out.append(
                encode_fields(
                    tokenizer,
                    prompt,
                    response,
                    split,
                    system=system,
                    max_length=max_length,
                    messages=messages,
                )
            )
        except ScoringError as exc:
            out.append(exc)
    return out


def encode_fields(
    tokenizer,
    prompt,
    response,
    split: Callable[[str], list[Span]],
    *,
    system,
    max_length,
    messages=None,
) -> Encoded:
    """One row's ``Encoded`` from its fields (``messages`` when not null, else prompt + response),
    its responses split into actions by ``split``; raises ``ScoringError``."""
    if not _missing(messages):
        return _encode_conversation(
            tokenizer, messages, split, system=system, max_length=max_length
        )
    if _missing(prompt) or not str(prompt).strip():
        raise ScoringError("missing_prompt", "the sample has no prompt")
    if _missing(response) or not str(response).strip():
        raise ScoringError("empty_response", "the response is empty")
    response = str(response)
    char_spans = split(response)
    if not char_spans:
        raise ScoringError("no_actions", "the segmenter found no action in the response")
    ids, prompt_len, offsets = encode_pair(tokenizer, str(prompt), response, system=system)
    if prompt_len == 0:
        raise ScoringError("missing_prompt", "the prompt encodes to zero tokens")
    spans = [(prompt_len + s, prompt_len + e) for s, e in token_spans(offsets, char_spans)]
    if not spans:
        raise ScoringError("no_actions", "no response token overlaps an action")
    return _truncate(ids, spans, prompt_len, max_length)


def encode(
    tokenizer,
    sample: Mapping,
    *,
    segmenter: str | Callable = "newline",
    pattern: str | None = None,
    system: str | None = DEFAULT_SYSTEM,
    max_length: int | None = MAX_LENGTH,
) -> tuple[list[int], list[Span]]:
    """The exact ids ``score_samples`` feeds the model for ``sample`` and each action's token range.

    ``sample`` is a row of the samples table (``prompt``, ``response``; a non-null ``messages``
    encodes the whole conversation, every assistant turn's actions in order). Returns
    ``(input_ids, action_spans)`` with ``action_spans[k] = (start, end)`` indices into ``input_ids``.
    Raises ``ScoringError`` (a ``ValueError`` with ``.status``) for a sample that cannot be scored.
    """
    enc = encode_fields(
        tokenizer,
        sample.get("prompt"),
        sample.get("response"),
        get_segmenter(segmenter, pattern=pattern),
        system=system,
        max_length=max_length,
        messages=sample.get("messages"),
    )
    return enc.input_ids, enc.action_spans


def length_batches(lengths: Sequence[int], token_budget: int) -> list[list[int]]:
    """Indices grouped into batches of similar length, longest first, each ≤ ``token_budget`` padded tokens.

    A sequence longer than the budget gets a batch of its own.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    for i in order:
        if batches and (len(batches[-1]) + 1) * lengths[batches[-1][0]] <= token_budget:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches
