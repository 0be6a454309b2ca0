"""The one answer module both loaders and graders read: boxes, GSM8K markers, answer lines."""

from __future__ import annotations

from p3_pruning import answers, data, graders


def test_loaders_and_graders_share_the_same_functions():
    assert data.last_boxed is answers.last_boxed is graders.last_boxed
    assert graders.answer_line is answers.answer_line
    assert graders.GSM_MARKER is answers.GSM_MARKER


def test_boxed_end_is_after_the_first_closed_box():
    text = r"x \boxed{\frac{1}{2}} then \boxed{3}"
    assert answers.boxed_end(text) == text.index("}}") + 2
    assert answers.boxed_end(r"open \boxed{\frac{1}{2} still") is None
    # an unclosed first box does not hide a later closed one
    assert answers.boxed_end(r"\boxed{1 \boxed{2}") == len(r"\boxed{1 \boxed{2}")
    assert answers.boxed_end(r"\boxed{\{ 1 \}} \boxed{2}") == len(r"\boxed{\{ 1 \}}")


def test_gsm8k_answer_needs_the_marker_at_the_start_of_its_line():
    assert answers.gsm8k_answer("a <<1+1=2>>2\n  #### 1,250 ") == (["a 2"], "1250")
    assert answers.gsm8k_answer("so #### 72") is None  # a model may write this; a reference may not
    assert answers.gsm8k_answer("so #### 72\n#### 73") == (["so #### 72"], "73")
    assert answers.gsm8k_answer("steps\n####   ") is None
    # graders read the marker anywhere on a line
    assert answers.gsm_marker("so #### 72") == "72"


def test_answer_line_takes_the_last_and_cleans_it():
    assert answers.answer_line("Answer: 3\n**Final answer:** $7$.") == "7"
    assert answers.answer_line("no answer here") is None
    assert answers.final_number("Answer: 1,000 apples") == 1000
