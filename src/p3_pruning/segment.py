"""Split a reference response into actions a_1 … a_K (character spans), for the difficulty scorer.

An action is a span of characters of the response; the characters between actions are separators
(context the model reads but is not scored on). Pieces that are empty or whitespace-only are dropped.

Segmenters:
- ``newline`` (the paper): separators are runs of ``\\n`` (regex ``\\n+``).
- ``sentence``: separators are the whitespace after ``.``, ``!`` or ``?`` (optionally followed by a
  closing quote or bracket) and runs of newlines. ``3.5`` is not split; abbreviations such as
  ``e.g. x`` are (a known limit of a rule-based splitter).
- ``code``: one action per Python logical line (a statement, including one spread over several
  physical lines inside brackets), and one per comment-only line; indentation and newlines are
  separators. Text that Python's tokenizer rejects falls back to ``newline``.
- ``regex``: separators are the non-empty matches of ``pattern``.
- a callable ``f(response) -> list[(start, end)]`` is used as it is.
"""

from __future__ import annotations

import io
import re
import tokenize
from collections.abc import Callable

Span = tuple[int, int]

NEWLINE_PATTERN = r"\n+"
SENTENCE_PATTERN = r"(?<=[.!?])\s+|(?<=[.!?][\"')\]])\s+|\n+"
SEGMENTERS = ("newline", "sentence", "code", "regex")


def split_by_separator(text: str, pattern: str | re.Pattern) -> list[Span]:
    """Spans of the pieces of ``text`` between non-empty matches of ``pattern`` (blank pieces dropped)."""
    regex = re.compile(pattern) if isinstance(pattern, str) else pattern
    spans, start = [], 0
    for match in regex.finditer(text):
        if match.end() == match.start():
            continue  # a zero-width match separates nothing
        spans.append((start, match.start()))
        start = match.end()
    spans.append((start, len(text)))
    return [(s, e) for s, e in spans if text[s:e].strip()]


def _line_starts(text: str) -> list[int]:
    starts = [0]
    starts.extend(i + 1 for i, ch in enumerate(text) if ch == "\n")
    return starts


def split_code(text: str) -> list[Span]:
    """One span per Python logical line or comment-only line; ``newline`` spans if tokenizing fails."""
    starts = _line_starts(text)

    def char(pos: tuple[int, int]) -> int:
        return starts[pos[0] - 1] + pos[1]

    skip = {tokenize.INDENT, tokenize.DEDENT, tokenize.ENCODING, tokenize.ENDMARKER}
    spans: list[Span] = []
    begin = end = None  # character range of the logical line being read
    comment_only = False
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type in skip:
                continue
            if tok.type in (tokenize.NEWLINE, tokenize.NL):
                # NL inside brackets continues a statement; NL after a comment-only line ends it.
                if begin is not None and (tok.type == tokenize.NEWLINE or comment_only):
                    spans.append((begin, end))
                    begin = None
                continue
            if begin is None:
                begin, comment_only = char(tok.start), tok.type == tokenize.COMMENT
            elif tok.type != tokenize.COMMENT:
                comment_only = False
            end = char(tok.end)
    except (tokenize.TokenError, SyntaxError):
        return split_by_separator(text, NEWLINE_PATTERN)
    if begin is not None:
        spans.append((begin, end))
    return [(s, e) for s, e in spans if text[s:e].strip()]


def get_segmenter(
    segmenter: str | Callable[[str], list[Span]] = "newline", *, pattern: str | None = None
) -> Callable[[str], list[Span]]:
    """The function ``response -> [(start, end), ...]`` named by ``segmenter`` (see module doc)."""
    if callable(segmenter):
        return segmenter
    if segmenter == "newline":
        regex = re.compile(NEWLINE_PATTERN)
    elif segmenter == "sentence":
        regex = re.compile(SENTENCE_PATTERN)
    elif segmenter == "code":
        return split_code
    elif segmenter == "regex":
        if not pattern:
            raise ValueError("segmenter='regex' needs a separator `pattern`, e.g. pattern=r'\\n+'")
        try:
            regex = re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"segmenter pattern {pattern!r} is not a valid regex: {exc}") from exc
    else:
        raise ValueError(
            f"unknown segmenter {segmenter!r}; expected one of {SEGMENTERS} or a callable"
        )
    return lambda text: split_by_separator(text, regex)


def segment(
    text: str, segmenter: str | Callable = "newline", *, pattern: str | None = None
) -> list[Span]:
    """Character spans ``[(start, end), ...]`` of the actions of ``text``, in order."""
    return get_segmenter(segmenter, pattern=pattern)(text)
