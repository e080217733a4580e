"""umlkit.course: the "What you should see" checks."""

import pytest

from umlkit.course import FAILS, HOLDS, UNCHECKED, what_you_should_see


def test_each_statement_is_printed_with_whether_it_holds(capsys):
    frame = what_you_should_see({"a > b": True, "c < d": False}, profile="default")
    assert frame["status"].tolist() == [HOLDS, FAILS]
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "What you should see (default profile)"
    assert out[1].split() == ["holds", "a", ">", "b"]
    assert out[2].startswith("  DOES NOT HOLD") and out[2].endswith("c < d")


def test_the_smoke_profile_checks_only_what_holds_at_any_budget(capsys):
    statements = {"about the data": True, "about training": False}
    frame = what_you_should_see(statements, profile="smoke", always=("about the data",))
    assert frame["status"].tolist() == [HOLDS, UNCHECKED]
    assert "train too little" in capsys.readouterr().out


def test_bad_input():
    with pytest.raises(ValueError, match="at least one statement"):
        what_you_should_see({}, profile="default")
    with pytest.raises(ValueError, match="not given"):
        what_you_should_see({"x": True}, profile="default", always=("y",))
