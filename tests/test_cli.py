"""The ``umlkit`` console command."""

import pytest

from umlkit.cli import build_parser, main


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    out = capsys.readouterr().out
    for command in ("synth", "figures"):
        assert command in out


def test_bad_profile_is_one_line_and_exit_2(capsys):
    assert main(["figures", "--profile", "huge"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("umlkit figures: unknown profile 'huge'")
