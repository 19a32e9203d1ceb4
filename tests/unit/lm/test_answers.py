"""Answer extraction and comparison (zoo.common.lm.answers), on hand-made cases."""

from __future__ import annotations

import pytest

from zoo.common.lm.answers import (
    answers_match,
    extract,
    extract_choice,
    extract_number,
    extract_yes_no,
    normalize_number,
)
from zoo.core.errors import ZooError


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("18.0", "18"),
        ("18.000", "18"),
        ("1,000", "1000"),
        ("1,234,567", "1234567"),
        ("-3.50", "-3.5"),
        ("3.05", "3.05"),
        ("100", "100"),  # zeros of an integer stay
        ("$5", "5"),
        ("$1,200.50", "1200.5"),
        ("45%", "45"),
        ("+7", "7"),
        ("12.", "12"),
        (".5", "0.5"),
        ("-0.0", "0"),
        ("  42 ", "42"),
        ("yes", "yes"),
        ("B", "B"),
    ],
)
def test_normalize_number(raw, expected):
    assert normalize_number(raw) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        # the embedded world's spaced punctuation
        ("5 + 3 = 8 . 8 x 2 = 16 . Therefore , the answer is 16 .", "16"),
        ("12 x 2 = 24 . Last , apply - 9 to 24 . Therefore , the answer is 15 .", "15"),
        # ordinary prose
        ("Therefore, the answer is 12.", "12"),
        ("She has 36-20 = 16 muffins left.\nTherefore, the answer is 16.", "16"),
        # a Therefore/So sentence beats a later number on the same line
        ("So she has 1,200 left. That is 12 boxes.", "1200"),
        ("Therefore , the answer is 7 . It took 3 steps .", "7"),
        ("So the total is 9. Then 4 more were lost, leaving 5.", "9"),
        # ... but the last line with a number wins
        ("Therefore, the answer is 12.\nCheck: 12 - 2 = 10", "10"),
        # without a conclusion sentence: the last number of the line
        ("He buys 3 packs of 4 cards, so 12 cards.", "12"),
        ("The first step gives 5 and the second gives 9", "9"),
        # number words (whole words only, any case)
        ("He needs five more.", "5"),
        ("Therefore, the answer is Twelve.", "12"),
        ("Someone has 3 apples and nobody has more.", "3"),
        # signs, decimals, thousands
        ("x = -3", "-3"),
        ("The change is 5.50 - 2.25 = 3.25 dollars.", "3.25"),
        ("The total is 1,234,567 dollars.", "1234567"),
        ("Therefore, the answer is 18.0 .", "18"),
        ("Read pages 10-12 tonight", "12"),  # a hyphen after a digit is not a minus sign
        ("The answer is $1,000.", "1000"),
        # nothing to extract
        ("no digits here", None),
        ("", None),
    ],
)
def test_extract_number(text, expected):
    assert extract_number(text) == expected


def test_extract_number_prefers_the_last_conclusion_sentence_of_the_line():
    text = "So first 4 . Then 6 more . Therefore , the answer is 10 . Later 99 ."
    assert extract_number(text) == "10"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Fish need water. Therefore, the answer is B.", "B"),
        ("A is wrong, C is wrong, so the answer is (D).", "D"),
        ("The answer is E", "E"),
        ("Answer: b", None),  # capitals only
        ("BEE is not a letter choice", None),  # standalone letters only
        ("no choice", None),
    ],
)
def test_extract_choice(text, expected):
    assert extract_choice(text) == expected


def test_extract_choice_restricts_to_the_given_letters():
    assert extract_choice("Either A or E.", choices="ABC") == "A"
    with pytest.raises(ZooError, match="choices"):
        extract_choice("A", choices="1")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Penguins cannot fly. So the answer is no.", "no"),
        ("No, wait. YES.", "yes"),
        ("Yes it does; therefore the answer is No", "no"),
        ("nothing here; notice, yesterday", None),  # whole words only
    ],
)
def test_extract_yes_no(text, expected):
    assert extract_yes_no(text) == expected


def test_extract_dispatches_by_kind():
    assert extract("Therefore , the answer is 4 .", "number") == "4"
    assert extract("Therefore, the answer is C.", "choice") == "C"
    assert extract("So the answer is yes.", "yesno") == "yes"
    with pytest.raises(ZooError, match="kind"):
        extract("x", "span")


@pytest.mark.parametrize(
    "pred, gold, expected",
    [
        ("18", "18", True),
        ("18.0", "18", True),
        ("1,000", "1000", True),
        ("$5", "5", True),
        ("0.50", ".5", True),
        ("007", "7", True),  # float fallback
        ("1e3", "1000", True),
        ("0.3333", "0.333", False),
        ("17", "18", False),
        ("B", "B", True),
        ("b", "B", True),
        ("Yes", "yes", True),
        ("no", "yes", False),
        (None, "18", False),
        ("18", None, False),
        ("", "", False),
        ("inf", "1e999", False),  # non-finite floats never match through the fallback
    ],
)
def test_answers_match(pred, gold, expected):
    assert answers_match(pred, gold) is expected
