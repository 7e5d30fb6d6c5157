"""The engine's range grammar (dsr_backend.ranges): the shared table, frames, and the former forms."""
import pytest

from dsr_backend.errors import InvalidInputError
from dsr_backend.ranges import parse_indices, parse_numbers
from tests import ranges_table


@pytest.mark.parametrize("text, expected", ranges_table.GOOD)
def test_values_of_the_shared_table(text, expected):
    assert parse_numbers(text, "t", last=ranges_table.LAST, step=1.0) == pytest.approx(expected)


@pytest.mark.parametrize("text, message", ranges_table.BAD)
def test_refusals_of_the_shared_table(text, message):
    with pytest.raises(InvalidInputError, match=message):
        parse_numbers(text, "t")


def test_a_range_of_times_needs_its_step():
    with pytest.raises(InvalidInputError, match=r"the range t=0-1 needs a step: 0-1:STEP"):
        parse_numbers("0-1", "t")


@pytest.mark.parametrize("text, expected", [
    ("all", list(range(98))), ("0-78:2", list(range(0, 79, 2))), ("5", [5]), ("90-last:5", [90, 95]),
    ("0,5,9", [0, 5, 9]),
])
def test_frames(text, expected):
    assert parse_indices(text, 98) == expected


@pytest.mark.parametrize("text, message", [
    ("0:80:2", r"'0:80:2' is a former Python slice; write 0-78:2"),
    (":", "former Python slice; write all"),
    ("10:", "former Python slice; write 10-97"),
    ("0-200", r"'0-200' reaches outside 0-97"),
    ("-1", "reaches outside 0-97"),
    ("1.5", "whole frame numbers"),
])
def test_bad_frames(text, message):
    with pytest.raises(InvalidInputError, match=message):
        parse_indices(text, 98, "--frames")
