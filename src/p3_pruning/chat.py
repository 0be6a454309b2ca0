"""The one place that turns (prompt, response) into model text and token ids.

Scoring, training and generation all call these functions, so the model is scored on exactly the
tokens it is trained on and generates from.
"""

from __future__ import annotations

DEFAULT_SYSTEM = (
    "You are a careful assistant. Solve the problem step by step, one step per line, "
    "and end with a line 'Answer: <final answer>'."
)


def prompt_text(tokenizer, prompt: str, *, system: str | None = DEFAULT_SYSTEM) -> str:
    """The chat-formatted instruction (system + user) ending where the assistant's reply starts."""
    if getattr(tokenizer, "chat_template", None):
        messages = [{"role": "user", "content": prompt}]
        if system:
            messages.insert(0, {"role": "system", "content": system})
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    head = f"{system}\n\n" if system else ""
    return f"{head}Question: {prompt}\nAnswer:\n"


def encode_pair(
    tokenizer,
    prompt: str,
    response: str,
    *,
    system: str | None = DEFAULT_SYSTEM,
    add_eos: bool = True,
) -> tuple[list[int], int, list[tuple[int, int]]]:
    """Token ids of prompt + response (+ end-of-turn), the prompt length, and response offsets.

    The prompt and the response are tokenized separately and concatenated, so the response's
    token boundaries never depend on the prompt. Returns ``(input_ids, prompt_len, offsets)`` where
    ``offsets[i]`` is the ``(start, end)`` character span in ``response`` of response token ``i``
    (the end-of-turn token, when added, has the empty span ``(len(response), len(response))``).
    """
    prompt_ids = tokenizer(prompt_text(tokenizer, prompt, system=system), add_special_tokens=False)[
        "input_ids"
    ]
    enc = tokenizer(response, add_special_tokens=False, return_offsets_mapping=True)
    response_ids = list(enc["input_ids"])
    offsets = [tuple(o) for o in enc["offset_mapping"]]
    if add_eos and tokenizer.eos_token_id is not None:
        response_ids.append(tokenizer.eos_token_id)
        offsets.append((len(response), len(response)))
    return list(prompt_ids) + response_ids, len(prompt_ids), offsets
