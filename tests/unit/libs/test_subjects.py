"""Subjects are built only from ids of the one token form: nothing else can reach a subject."""
from __future__ import annotations

import pytest

from libs import subjects


@pytest.mark.parametrize("bad", ["h1\n", "h1 ", "h1.x", "h1*", ">", "H1", "", "h1\r"])
def test_a_subject_refuses_anything_but_a_token(bad: str) -> None:
    with pytest.raises(ValueError, match="not a valid id"):
        subjects.place(bad)


def test_a_token_makes_a_subject() -> None:
    assert subjects.place("h1").endswith(".place.h1")
