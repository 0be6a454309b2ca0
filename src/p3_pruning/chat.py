"""The one place that turns (prompt, response) or a conversation into model text and token ids.

Scoring, training and generation all call these functions, so the model is scored on exactly the
tokens it is trained on and generates from.

Conversations (``encode_conversation``) are rendered with the tokenizer's own chat template. The
text before each assistant turn is the template's rendering of the earlier turns with the generation
prompt; the turn's content follows it, then the end-of-turn token. Each piece is tokenized on its own
(as ``encode_pair`` does for one exchange), so an assistant turn's token boundaries never depend on
its context, and a one-exchange conversation encodes exactly like ``encode_pair``. Tokenizers without
a chat template get a plain-text fallback: the system text and a blank line, each user turn as
``Question: <text>\nAnswer:\n``, each assistant turn as its text, the eos token and a newline.
"""

from __future__ import annotations

from dataclasses import dataclass

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


Span = tuple[int, int]


@dataclass(frozen=True)
class Turn:
    """An assistant turn inside a conversation's token ids.

    ``start``: index in ``input_ids`` of its first token; ``offsets[i]``: the character span in
    ``content`` of its token ``i`` (the end-of-turn token, when added, has the empty span at the
    end). The turn occupies ``input_ids[start : start + len(offsets)]``.
    """

    start: int
    offsets: list[Span]
    content: str

    @property
    def end(self) -> int:
        return self.start + len(self.offsets)


def with_system(messages: list[dict], system: str | None = DEFAULT_SYSTEM) -> list[dict]:
    """The conversation with ``system`` as its first turn, unless it has a system turn of its own."""
    turns = [{"role": m["role"], "content": m["content"]} for m in messages]
    if system and (not turns or turns[0]["role"] != "system"):
        turns.insert(0, {"role": "system", "content": system})
    return turns


def render(tokenizer, messages: list[dict], *, generation_prompt: bool = False) -> str:
    """The conversation as model text: the chat template, or the plain fallback (module doc)."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=generation_prompt
        )
    eos = tokenizer.eos_token or ""
    parts = {
        "system": lambda text: f"{text}\n\n",
        "user": lambda text: f"Question: {text}\nAnswer:\n",
        "assistant": lambda text: f"{text}{eos}\n",
    }
    return "".join(parts[m["role"]](m["content"]) for m in messages)


def encode_conversation(
    tokenizer,
    messages: list[dict],
    *,
    system: str | None = DEFAULT_SYSTEM,
    add_eos: bool = True,
) -> tuple[list[int], int, list[Turn]]:
    """Token ids of a whole conversation, the length before the first assistant turn, and its turns.

    ``messages``: ``[{"role": "system"|"user"|"assistant", "content": str}, ...]``; ``system`` is
    used only when the conversation has no system turn. Returns ``(input_ids, prompt_len, turns)``
    with one :class:`Turn` per assistant turn; every other token is context. The ids end with the
    last assistant turn's end-of-turn token (turns after it are not encoded).

    Raises ``ValueError`` when the template does not render an assistant turn as the rendering of
    the turns before it (with the generation prompt) followed by the turn's content.
    """
    msgs = with_system(messages, system)
    full = render(tokenizer, msgs)
    eos_text, eos_id = tokenizer.eos_token, tokenizer.eos_token_id
    ids: list[int] = []
    turns: list[Turn] = []
    prompt_len, pos = None, 0  # pos: characters of `full` already encoded
    for i, message in enumerate(msgs):
        if message["role"] != "assistant":
            continue
        before = render(tokenizer, msgs[:i], generation_prompt=True)
        content = message["content"]
        if len(before) < pos or not full.startswith(before + content):
            raise ValueError(
                f"the chat template does not render assistant turn {i} as the turns before it "
                "plus its content (it may rewrite earlier turns); cannot find the turn's tokens"
            )
        if len(before) > pos:
            ids.extend(tokenizer(full[pos : len(before)], add_special_tokens=False)["input_ids"])
        if prompt_len is None:
            prompt_len = len(ids)
        enc = tokenizer(content, add_special_tokens=False, return_offsets_mapping=True)
        start = len(ids)
        ids.extend(enc["input_ids"])
        offsets = [tuple(o) for o in enc["offset_mapping"]]
        pos = len(before) + len(content)
        if add_eos and eos_id is not None:
            ids.append(eos_id)
            offsets.append((len(content), len(content)))
            if eos_text and full.startswith(eos_text, pos):
                pos += len(eos_text)
        turns.append(Turn(start, offsets, content))
    if not turns:
        raise ValueError("the conversation has no assistant turn")
    return ids, int(prompt_len), turns
