"""Command line: help, option validation, path errors, the distances command."""

import numpy as np
import pytest

from geomstats_pullback import cli
from geomstats_pullback.distances import command as distances_command
from geomstats_pullback.demo.config import DemoConfig, options


def _run(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def test_help_documents_every_option(capsys):
    code, out, _ = _run(["demo", "--help"], capsys)
    assert code == 0
    parser = cli.command_parser("demo")
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


def test_help_lists_each_declared_option_with_its_help_and_values(capsys):
    """Every DemoConfig field is one option; its help, quick and full values come from that declaration."""
    parser = cli.command_parser("demo")
    by_dest = {action.dest: action for action in parser._actions}
    declared = options()
    assert set(declared) == {name for name in by_dest if name != "help"}
    for name, option in declared.items():
        action = by_dest[name]
        assert action.help.startswith(option.help), name
        if option.is_size:
            assert f"(default {option.full}; quick {option.quick})" in action.help
    sizes = {name: option for name, option in declared.items() if option.is_size}
    assert {"pairs", "grid", "nodes", "exp_steps"} <= set(sizes)
    quick, full = DemoConfig(quick=True).resolved(), DemoConfig().resolved()
    for name, option in sizes.items():
        assert (getattr(quick, name), getattr(full, name)) == (option.quick, option.full)
    assert DemoConfig(quick=True, pairs=5).resolved().pairs == 5  # an explicit size wins


def test_parsed_options_become_the_config():
    args = cli.build_parser().parse_args(["demo", "--out", "x", "--quick", "--pairs", "3", "--no-progress"])
    config = cli.config_from_args(args)
    assert (str(config.out), config.quick, config.pairs, config.progress, config.grid) == ("x", True, 3, False, None)


def test_distances_is_a_real_subcommand(monkeypatch, capsys):
    code, out, _ = _run(["distances", "--help"], capsys)
    assert code == 0
    for flag in ("--decoder", "--analytic", "--out", "--block-size", "--scheduler", "--eps", "--summary"):
        assert flag in out
    seen = {}

    def fake_run(args):
        seen["args"] = args
        return 7

    monkeypatch.setattr(distances_command, "run", fake_run)
    assert cli.main(["distances", "codes.npy", "--analytic", "cylinder", "--out", "s", "--block-size", "3"]) == 7
    assert seen["args"].block_size == 3 and seen["args"].analytic == "cylinder"


def test_distances_bad_options_and_input_exit_2(tmp_path, capsys):
    code, _, err = _run(["distances", "codes.npy", "--out", "s"], capsys)
    assert code == 2 and "one of the arguments --decoder --analytic is required" in err
    np.save(tmp_path / "flat.npy", np.zeros(5))
    argv = ["distances", str(tmp_path / "flat.npy"), "--analytic", "sphere_chart", "--out", str(tmp_path / "s")]
    code, _, err = _run(argv, capsys)
    assert code == 2
    assert err.startswith("geomstats-pullback distances: error: ") and "shape [n, d]" in err
    assert err.count("\n") == 1


@pytest.mark.parametrize("command", ["demo", "distances"])
def test_keyboard_interrupt_exits_130(command, tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "run_demo", interrupted)
    monkeypatch.setattr(cli.torch, "set_num_threads", lambda n: None)
    monkeypatch.setattr(distances_command, "run", interrupted)
    argv = {
        "demo": ["demo", "--out", str(tmp_path / "o"), "--no-progress"],
        "distances": ["distances", "c.npy", "--analytic", "cylinder", "--out", str(tmp_path / "s")],
    }
    assert cli.main(argv[command]) == 130
