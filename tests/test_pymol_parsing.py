"""State strings, number lists and ranges as PyMOL users type them."""
import math

import pytest
from pymol import CmdException

from pymol_dsr.parsing import parse_states, parse_values


@pytest.mark.parametrize("text, expected", [
    ("1-5", [1, 2, 3, 4, 5]),
    ("1-9:2", [1, 3, 5, 7, 9]),
    ("1-10:3", [1, 4, 7, 10]),
    ("2-last", [2, 3, 4, 5, 6, 7, 8, 9, 10]),
    ("1 5 9", [1, 5, 9]),
    ("9+1+5", [1, 5, 9]),
    ("1-3 2-4", [1, 2, 3, 4]),
    ("last", [10]),
    ("", list(range(1, 11))),
    ("all", list(range(1, 11))),
    ("0", list(range(1, 11))),
    ("*", list(range(1, 11))),
])
def test_state_strings(text, expected):
    assert parse_states(text, 10) == expected


@pytest.mark.parametrize("text, message", [
    ("1-11", "out of range"),
    ("12", "out of range"),
    ("5-2", "empty"),
    ("1-5:0", "empty"),
    ("a-b", "cannot read"),
    ("1.5", "cannot read"),
    ("-3", "cannot read"),
])
def test_bad_state_strings(text, message):
    with pytest.raises(CmdException, match=message):
        parse_states(text, 10, "object 'x'")


def test_out_of_range_names_the_object_and_its_state_count():
    with pytest.raises(CmdException, match="object 'adk' has 98 states"):
        parse_states("1-150", 98, "object 'adk'")


@pytest.mark.parametrize("value, expected", [
    ("0.5", [0.5]),
    ("0 0.5 1", [0.0, 0.5, 1.0]),
    ("0,1", [0.0, 1.0]),
    ("0:1:5", [0.0, 0.25, 0.5, 0.75, 1.0]),
    ("1:1:1", [1.0]),
    ("-1 0:2:3", [-1.0, 0.0, 1.0, 2.0]),
    (0.25, [0.25]),
    ([1, 2], [1.0, 2.0]),
])
def test_values_and_ranges(value, expected):
    assert parse_values(value) == pytest.approx(expected)


def test_a_range_of_fifty():
    values = parse_values("0:1:50", "t")
    assert len(values) == 50 and values[0] == 0.0 and values[-1] == pytest.approx(1.0)


@pytest.mark.parametrize("value, message", [
    ("nan", "finite"), ("inf", "finite"), (math.nan, "finite"), ("-inf 0", "finite"),
    ("abc", "must be a number"), ("0:1", "start:stop:count"), ("0:1:0", "positive whole"),
    ("0:1:2.5", "positive whole"), ("", "must be a number"),
])
def test_bad_values(value, message):
    with pytest.raises(CmdException, match=message):
        parse_values(value, "t")
