"""Command line: help, option validation, path errors, the distances forwarder."""

import sys
import types

import pytest

from geomstats_pullback import cli


def _run(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def test_help_documents_every_option(capsys):
    code, out, _ = _run(["demo", "--help"], capsys)
    assert code == 0
    parser = cli.build_parser().demo_parser
    for action in parser._actions:
        for flag in action.option_strings:
            assert flag in out, flag
        assert action.help, action.option_strings
    code, out, _ = _run(["--help"], capsys)
    assert code == 0 and "demo" in out and "distances" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        ([], "COMMAND"),
        (["demo", "--out", "x", "--pairs", "0"], "--pairs: expected an integer >= 1, got 0"),
        (["demo", "--out", "x", "--grid", "ten"], "--grid: expected an integer >= 1, got 'ten'"),
        (["demo", "--out", "x", "--std-epochs", "-1"], "--std-epochs: expected an integer >= 0, got -1"),
        (["demo", "--out", "x", "--nodes", "2"], "--nodes: expected an integer >= 3, got 2"),
        (["demo", "--out", "x", "--frechet-classes", "11"], "expected an integer from 1 to 10, got 11"),
        (["demo", "--out", "x", "--bogus"], "unrecognized arguments: --bogus"),
        (["fly"], "invalid choice"),
    ],
)
def test_bad_options_exit_2_with_a_clear_message(argv, message, capsys):
    code, _, err = _run(argv, capsys)
    assert code == 2
    assert message in err


def test_out_that_is_a_file(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("")
    code, _, err = _run(["demo", "--out", str(afile)], capsys)
    assert code == 2 and "exists and is not a directory" in err


def test_out_that_cannot_be_created(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("")
    code, _, err = _run(["demo", "--out", str(afile / "sub")], capsys)
    assert code == 2 and "cannot create the directory" in err


def test_checkpoint_that_is_a_directory(tmp_path, capsys):
    code, _, err = _run(["demo", "--out", str(tmp_path / "o"), "--checkpoint", str(tmp_path)], capsys)
    assert code == 2 and "is a directory" in err


def test_checkpoint_that_is_not_a_checkpoint(tmp_path, capsys):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00not a checkpoint")
    argv = ["demo", "--out", str(tmp_path / "o"), "--checkpoint", str(junk), "--quick", "--no-progress"]
    code, _, err = _run(argv, capsys)
    assert code == 2
    assert "not a readable VAE checkpoint" in err and "--retrain" in err


def test_distances_forwards_its_arguments(monkeypatch):
    seen = {}
    fake = types.ModuleType("geomstats_pullback.distances_cli")

    def distance_matrix_main(argv):
        seen["argv"] = argv
        return 7

    fake.distance_matrix_main = distance_matrix_main
    monkeypatch.setitem(sys.modules, "geomstats_pullback.distances_cli", fake)
    assert cli.main(["distances", "--help", "--block-size", "3"]) == 7
    assert seen["argv"] == ["--help", "--block-size", "3"]
