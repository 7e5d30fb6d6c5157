"""State strings, number lists and ranges as PyMOL users type them."""
import math

import pytest
from pymol import CmdException

from pymol_dsr import parsing
from pymol_dsr.parsing import parse_states, parse_values
from tests import ranges_table


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


def test_values_and_ranges_read_as_the_engine_reads_them():
    for text, expected in ranges_table.GOOD:
        assert parse_values(text, "t", last=ranges_table.LAST, step=1.0) == pytest.approx(expected), text


def test_bad_values_are_refused_as_the_engine_refuses_them():
    for text, message in ranges_table.BAD:
        with pytest.raises(CmdException, match=message):
            parse_values(text, "t", last=None)


def test_lists_and_numbers_pass_through():
    assert parse_values(0.25) == [0.25] and parse_values([1, 2]) == [1.0, 2.0]
    with pytest.raises(CmdException, match="finite"):
        parse_values(math.nan, "t")


def test_the_plugin_limit_is_the_engine_limit():
    from dsr_backend.limits import MAX_TIMES
    assert parsing.MAX_TIMES == MAX_TIMES


