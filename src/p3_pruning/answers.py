"""Final answers in text: ``\\boxed{}``, GSM8K's ``#### n`` marker, ``Answer:`` lines and numbers.

The one place both sides read answers from: the loaders (``data.sources``: the gold answer of a
GSM8K or MATH record) and the graders (the answer a model wrote, and where generation may stop).

- ``last_boxed(text)``: content of the last ``\\boxed{...}`` / ``\\fbox{...}`` (nested braces ok).
- ``boxed_end(text)``: index after the first complete ``\\boxed{...}``.
- ``gsm_marker(text)``: what follows the last ``####``; ``gsm8k_answer(text)``: a GSM8K reference
  split into rationale steps and its final number (the marker must start its line there).
- ``answer_line(text)``: the last ``Answer: ...`` line; ``answer_end(text)``: where the first
  complete final answer ends.
- ``numbers``, ``to_number``, ``final_number``: numbers as written and as exact fractions.
"""

from __future__ import annotations

import re
from fractions import Fraction

# A final-answer line: "Answer: 42", "**Final answer:** 42", "## Answer: 42".
ANSWER_LINE = re.compile(r"(?im)^[ \t>*#_]*(?:final[ \t]+)?answer[ \t*_]*:[ \t*_]*(\S[^\n]*)$")
# GSM8K's final-answer marker "#### 42"; a "####" with nothing after it marks nothing.
GSM_MARKER = re.compile(r"(?m)####[ \t]*(\S[^\n]*)$")
_BOX = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
_BOX_OPEN = re.compile(r"\\(?:boxed|fbox)[ ]*\{")
_CALCULATOR = re.compile(r"<<[^<>]*>>")  # GSM8K's calculator annotations "<<48/2=24>>"
# Integers with or without thousands separators, decimals, simple fractions; a minus sign only where it
# cannot be a subtraction ("10-4" holds 10 and 4, not −4).
_NUMBER = re.compile(
    r"(?:(?<![\w)\]])[-−])?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?(?:/\d+)?|(?:(?<![\w)\]])[-−])?\.\d+"
)


# ----------------------------------------------------------------------------------------------
# \boxed{}
# ----------------------------------------------------------------------------------------------
def braced(text: str, start: int) -> tuple[str, int] | None:
    """Content of the brace group opening at ``text[start] == "{"`` and the index after it.

    Nested groups are balanced; escaped braces (``\\{``, ``\\}``) are content, not structure.
    Returns None when the group never closes.
    """
    depth, i = 0, start
    while i < len(text):
        char = text[i]
        if char == "\\":
            i += 2
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1 : i], i + 1
        i += 1
    return None


def last_boxed(text: str) -> str | None:
    """Content of the last top-level ``\\boxed{...}`` / ``\\fbox{...}`` (or ``\\boxed 5``) in ``text``.

    Nested braces are handled (``\\boxed{\\frac{a}{b}}`` → ``\\frac{a}{b}``). None when there is no
    box, it never closes, or it is empty.
    """
    found, pos = None, 0
    while (match := _BOX.search(text, pos)) is not None:
        i = match.end()
        while i < len(text) and text[i] == " ":
            i += 1
        if i < len(text) and text[i] == "{":
            group = braced(text, i)
            if group is None:
                found, pos = None, i + 1
                continue
            found, pos = group[0].strip(), group[1]
        else:
            bare = re.match(r"[^\s$]+", text[i:])
            found, pos = (bare.group(0) if bare else None), match.end()
    return found or None


def boxed_end(text: str) -> int | None:
    """Index just after the first complete ``\\boxed{...}`` in ``text`` (None if there is none yet)."""
    for match in _BOX_OPEN.finditer(text):
        group = braced(text, match.end() - 1)
        if group is not None:
            return group[1]
    return None


# ----------------------------------------------------------------------------------------------
# "#### n" and "Answer: ..." lines
# ----------------------------------------------------------------------------------------------
def clean_answer(s: str) -> str:
    """Drop markdown emphasis, surrounding ``$`` and a trailing period, in any nesting order."""
    previous = None
    while s != previous:
        previous = s
        s = s.strip().strip("*_`").strip().rstrip(".")
        if len(s) > 1 and s.startswith("$") and s.endswith("$"):
            s = s[1:-1]
    return s


def answer_line(text: str) -> str | None:
    """The last ``Answer: ...`` line's content (markdown and a trailing period removed)."""
    found = ANSWER_LINE.findall(text or "")
    return clean_answer(found[-1]) if found else None


def gsm_marker(text: str) -> str | None:
    """What follows the last ``####``."""
    found = GSM_MARKER.findall(text or "")
    return clean_answer(found[-1]) if found else None


def gsm8k_answer(text: str) -> tuple[list[str], str] | None:
    """A GSM8K reference split into cleaned rationale steps and the final number (commas removed).

    The final number follows the last ``####`` that starts its line; calculator annotations
    (``<<48/2=24>>``) are removed from the steps. None when there is no such marker.
    """
    finals = [
        m for m in GSM_MARKER.finditer(text) if not text[: m.start()].rsplit("\n", 1)[-1].strip()
    ]
    if not finals:
        return None
    final = finals[-1]
    number = final.group(1).replace(",", "").strip()
    if not number:
        return None
    rationale = _CALCULATOR.sub("", text[: final.start()])
    steps = [line.strip() for line in rationale.splitlines() if line.strip()]
    return steps, number


def answer_end(text: str) -> int | None:
    """Index just after the first complete final answer: an ``Answer: ...`` or ``#### ...`` line ended by a
    newline, or a closed ``\\boxed{}``. Generation stops there."""
    ends = []
    for pattern in (ANSWER_LINE, GSM_MARKER):
        for m in pattern.finditer(text):
            if m.end() < len(text) and text[m.end()] == "\n":
                ends.append(m.end() + 1)
                break
    box = boxed_end(text)
    if box is not None:
        ends.append(box)
    return min(ends) if ends else None


# ----------------------------------------------------------------------------------------------
# Numbers
# ----------------------------------------------------------------------------------------------
def numbers(text: str) -> list[str]:
    """Every number in ``text`` as written (``1,000``, ``-3.5``, ``3/4``)."""
    return _NUMBER.findall(text or "")


def to_number(text: str | None) -> Fraction | None:
    """The first number in ``text`` as an exact fraction: ``"$1,000.00 dollars"`` → 1000, ``"3/4"`` → 3/4."""
    if text is None:
        return None
    found = numbers(str(text))
    if not found:
        return None
    raw = found[0].replace(",", "").replace("−", "-")
    try:
        return Fraction(raw)
    except (ValueError, ZeroDivisionError):
        return None


def final_number(text: str) -> Fraction | None:
    """The response's final number: ``####`` line, else ``Answer:`` line, else the last number in the text."""
    for extracted in (gsm_marker(text), answer_line(text)):
        value = to_number(extracted)
        if value is not None:
            return value
    found = numbers(text)
    return to_number(found[-1]) if found else None
