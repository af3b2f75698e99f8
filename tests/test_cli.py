"""Command line: help, option validation, path errors, the distances command."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from geomstats_pullback import cli
from geomstats_pullback.demo.config import DemoConfig, options
from geomstats_pullback.demo.run import MARKER
from geomstats_pullback.demo.run import run as run_demo_directly
from geomstats_pullback.distances import command as distances_command


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
        (["demo", "--out", "x", "--pairs", "0"], "--pairs: expected an integer from 1 to 100000, got 0"),
        (["demo", "--out", "x", "--grid", "ten"], "--grid: expected an integer from 1 to 1000, got 'ten'"),
        (["demo", "--out", "x", "--std-epochs", "-1"], "--std-epochs: expected an integer from 0 to 100000, got -1"),
        (["demo", "--out", "x", "--nodes", "2"], "--nodes: expected an integer from 3 to 100000, got 2"),
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
    assert code == 2 and "one of the arguments --decoder --state-dict --analytic is required" in err
    np.save(tmp_path / "flat.npy", np.zeros(5))
    argv = ["distances", str(tmp_path / "flat.npy"), "--analytic", "sphere_chart", "--out", str(tmp_path / "s")]
    code, _, err = _run(argv, capsys)
    assert code == 2
    assert err.startswith("geomstats-pullback distances: error: ") and "shape [n, d]" in err
    assert err.count("\n") == 1


@pytest.mark.parametrize("command", ["demo", "distances"])
def test_keyboard_interrupt_exits_130(command, tmp_path, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "run_demo", interrupted)
    monkeypatch.setattr(distances_command, "run", interrupted)
    argv = {
        "demo": ["demo", "--out", str(tmp_path / "o"), "--no-progress", "--threads", str(torch.get_num_threads())],
        "distances": ["distances", "c.npy", "--analytic", "cylinder", "--out", str(tmp_path / "s")],
    }
    assert cli.main(argv[command]) == 130
    assert capsys.readouterr().err == f"geomstats-pullback {command}: interrupted\n"


@pytest.mark.slow
@pytest.mark.subprocess
def test_real_ctrl_c_during_distances_exits_130_without_traceback(tmp_path):
    """SIGINT while blocks are being solved: status 130, one line, and the store resumes afterwards."""
    np.save(tmp_path / "codes.npy", np.random.default_rng(0).uniform(-1, 1, (40, 2)))
    argv = [sys.executable, "-m", "geomstats_pullback.cli", "distances", str(tmp_path / "codes.npy")]
    argv += ["--analytic", "random_mlp", "--out", str(tmp_path / "s"), "--block-size", "4", "--no-progress"]
    process = subprocess.Popen(
        argv,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(cli.__file__).parents[1])},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 120
    blocks = tmp_path / "s" / "blocks"
    while not (blocks.is_dir() and any(blocks.iterdir())):  # interrupt once the first block is written
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "Traceback" not in err and err.strip().endswith("geomstats-pullback distances: interrupted")


def test_distances_nan_eps_exits_2_in_one_line(tmp_path, capsys):
    np.save(tmp_path / "c.npy", np.zeros((3, 2)))
    for eps in ("nan", "inf", "-1"):
        argv = ["distances", str(tmp_path / "c.npy"), "--analytic", "cylinder", "--out", str(tmp_path / eps)]
        code, _, err = _run([*argv, "--eps", eps], capsys)
        assert code == 2 and err.count("\n") == 1 and "eps must be" in err, err


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "No such file or directory"),
        (b"hello", "is not a .npy file of numbers"),
        (np.array([[0.0, 0.0], [np.nan, 1.0]]), "contains NaN or inf"),
        (np.array([[True, False]]), "must hold real numbers, got dtype bool"),
        (np.array([[1, "a"]], dtype=object), "is not a .npy file of numbers"),
        (np.zeros((0, 2)), "got shape (0, 2)"),
        (np.zeros((2, 2, 2)), "must hold an array of shape [n, d]"),
    ],
)
def test_distances_bad_codes_file_exits_2_in_one_line(content, message, tmp_path, capsys):
    path = tmp_path / "codes.npy"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        np.save(path, content, allow_pickle=True)
    code, _, err = _run(["distances", str(path), "--analytic", "cylinder", "--out", str(tmp_path / "s")], capsys)
    assert code == 2 and message in err and err.count("\n") == 1, err


def _small_mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(2, 6, dtype=torch.float64), torch.nn.Tanh(), torch.nn.Linear(6, 4, dtype=torch.float64)
    )


def test_distances_latent_dimension_not_the_decoders_exits_2(tmp_path, capsys):
    torch.save(_small_mlp(), tmp_path / "mlp.pt")
    np.save(tmp_path / "c3.npy", np.zeros((3, 3)))
    argv = ["distances", str(tmp_path / "c3.npy"), "--decoder", str(tmp_path / "mlp.pt"), "--out", str(tmp_path / "s")]
    code, _, err = _run(argv, capsys)
    assert code == 2 and err.count("\n") == 1
    assert "cannot decode the latent codes" in err and "(dimension 3)" in err


def test_distances_threads_option(tmp_path, capsys, monkeypatch):
    np.save(tmp_path / "c.npy", np.random.default_rng(1).uniform(-1, 1, (3, 2)))
    argv = ["distances", str(tmp_path / "c.npy"), "--analytic", "flat_torus", "--out", str(tmp_path / "s")]
    code, _, err = _run([*argv, "--threads", "0"], capsys)
    assert code == 2 and "--threads must be an integer >= 1, got 0" in err
    assert cli.build_parser().parse_args(argv).threads == 1  # the documented default
    seen = []
    monkeypatch.setattr(torch, "set_num_threads", seen.append)
    assert cli.main([*argv, "--threads", "3", "--no-progress"]) == 0
    assert seen == [3]
    assert json.loads((tmp_path / "s" / "summary.json").read_text())["threads"] == 3


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("--seed", "-1", "--seed: expected an integer from 0 to 4294967295, got -1"),
        ("--seed", "4294967296", "--seed: expected an integer from 0 to 4294967295"),
        ("--epochs", "0", "--epochs: expected an integer from 1 to 100000, got 0"),
        ("--exp-steps", "0", "--exp-steps: expected an integer from 1 to 100000, got 0"),
        ("--grid", "100000", "--grid: expected an integer from 1 to 1000, got 100000"),
        ("--latent-dim", "0", "--latent-dim: expected an integer from 1 to 64, got 0"),
        ("--threads", "0", "--threads: expected an integer from 1 to 1024, got 0"),
    ],
)
def test_integer_options_out_of_range_exit_2_naming_the_option(option, value, message, tmp_path, capsys):
    code, _, err = _run(["demo", "--out", str(tmp_path / "o"), option, value], capsys)
    assert code == 2 and message in err
    assert not (tmp_path / "o").exists()  # refused before anything is written


@pytest.mark.parametrize(
    "field, value", [("latent_dim", True), ("seed", -1), ("pairs", 0), ("nodes", 2), ("grid", 2.5), ("threads", 0)]
)
def test_demo_config_checks_its_integers(field, value):
    with pytest.raises(ValueError, match=f"^{field} must be an integer"):
        DemoConfig(**{field: value})


def test_checkpoint_in_a_missing_directory_is_created(tmp_path, monkeypatch):
    """--checkpoint a/b/vae.pt: the missing parents are created, as for --out."""
    seen = {}

    def fake_run(config):
        seen["config"] = config
        return {"timings": {}}

    monkeypatch.setattr(cli, "run_demo", fake_run)
    checkpoint = tmp_path / "a" / "b" / "vae.pt"
    argv = ["demo", "--out", str(tmp_path / "o"), "--checkpoint", str(checkpoint)]
    argv += ["--threads", str(torch.get_num_threads())]
    assert cli.main(argv) == 0
    assert checkpoint.parent.is_dir() and seen["config"].checkpoint == checkpoint


def test_checkpoint_whose_parent_cannot_be_created(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("")
    argv = ["demo", "--out", str(tmp_path / "o"), "--checkpoint", str(afile / "b" / "vae.pt")]
    code, _, err = _run(argv, capsys)
    assert code == 2 and "--checkpoint" in err and "cannot create its directory" in err


def test_out_with_foreign_files_is_refused_unless_forced(tmp_path, capsys, monkeypatch):
    out = tmp_path / "o"
    out.mkdir()
    (out / "results.json").write_text('{"mine": 1}')
    monkeypatch.setattr(cli, "run_demo", lambda config: {"timings": {}})
    threads = ["--threads", str(torch.get_num_threads())]
    code, _, err = _run(["demo", "--out", str(out), *threads], capsys)
    assert code == 2 and "not the output of an earlier demo run" in err and "--force" in err
    assert (out / "results.json").read_text() == '{"mine": 1}' and not (out / MARKER).exists()
    assert cli.main(["demo", "--out", str(out), "--force", *threads]) == 0
    assert (out / MARKER).is_file()
    assert cli.main(["demo", "--out", str(out), *threads]) == 0  # an earlier demo output is reused
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli.main(["demo", "--out", str(empty), *threads]) == 0


def test_run_refuses_a_foreign_out_directory_too(tmp_path):
    (tmp_path / "report.html").write_text("<p>someone else's</p>")
    with pytest.raises(FileExistsError, match="not the output of an earlier demo run"):
        run_demo_directly(DemoConfig(out=tmp_path, quick=True, progress=False))
    assert (tmp_path / "report.html").read_text() == "<p>someone else's</p>"


ARCHITECTURE = """
import torch

SMALL_CONSTANT = 3


def small_decoder():
    return torch.nn.Sequential(
        torch.nn.Linear(2, 6, dtype=torch.float64), torch.nn.Tanh(), torch.nn.Linear(6, 4, dtype=torch.float64)
    )


def wrong_shape():
    return torch.nn.Sequential(torch.nn.Linear(2, 5, dtype=torch.float64))


def not_a_module():
    return {}
"""


def _small_module():
    return torch.nn.Sequential(
        torch.nn.Linear(2, 6, dtype=torch.float64), torch.nn.Tanh(), torch.nn.Linear(6, 4, dtype=torch.float64)
    )


def _state_dict_argv(tmp_path, monkeypatch, architecture="cli_test_architecture:small_decoder"):
    """Options of the weights-only path, run from ``tmp_path`` where the architecture's module lies."""
    (tmp_path / "cli_test_architecture.py").write_text(ARCHITECTURE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "cli_test_architecture", raising=False)
    np.save(tmp_path / "c.npy", np.random.default_rng(2).uniform(-1, 1, (4, 2)))
    argv = ["distances", "c.npy", "--state-dict", "w.pt", "--architecture", architecture]
    return [*argv, "--out", "s", "--no-progress"]


def test_state_dict_and_architecture_give_the_pickled_modules_matrix(tmp_path, monkeypatch):
    argv = _state_dict_argv(tmp_path, monkeypatch)
    torch.manual_seed(3)
    module = _small_module()
    torch.save(module.state_dict(), "w.pt")
    torch.save(module, "whole.pt")
    assert cli.main(argv) == 0
    assert cli.main(["distances", "c.npy", "--decoder", "whole.pt", "--out", "pickled", "--no-progress"]) == 0
    weights_only = np.load(tmp_path / "s" / "dist.npy")
    assert weights_only[0, 1] > 0
    np.testing.assert_array_equal(weights_only, np.load(tmp_path / "pickled" / "dist.npy"))
    summary = json.loads((tmp_path / "s" / "summary.json").read_text())
    assert summary["decoder"] == "cli_test_architecture:small_decoder with w.pt"


def test_state_dict_never_unpickles_objects(tmp_path, monkeypatch, capsys):
    """A file holding a whole pickled module (code) is refused by the weights-only path."""
    argv = _state_dict_argv(tmp_path, monkeypatch)
    torch.save(_small_module(), "w.pt")
    code, _, err = _run(argv, capsys)
    assert code == 2 and "not a weights-only state dict" in err and err.count("\n") == 1


@pytest.mark.parametrize(
    "architecture, message",
    [
        (None, "--state-dict needs --architecture MODULE:ATTR"),
        ("nocolon", "--architecture must be MODULE:ATTR"),
        ("no_such_module_xyz:Net", "cannot import no_such_module_xyz"),
        ("cli_test_architecture:NoSuchNet", "has no attribute NoSuchNet"),
        ("cli_test_architecture:SMALL_CONSTANT", "is not callable"),
        ("cli_test_architecture:wrong_shape", "does not fit --architecture"),
        ("cli_test_architecture:not_a_module", "returned a dict, not a torch.nn.Module"),
    ],
)
def test_state_dict_errors_exit_2_in_one_line(architecture, message, tmp_path, monkeypatch, capsys):
    argv = _state_dict_argv(tmp_path, monkeypatch, architecture or "x:y")
    torch.save(_small_module().state_dict(), "w.pt")
    if architecture is None:
        argv = argv[: argv.index("--architecture")] + argv[argv.index("--architecture") + 2 :]
    code, _, err = _run(argv, capsys)
    assert code == 2 and message in err and err.count("\n") == 1, err


def test_architecture_without_state_dict_is_refused(tmp_path, capsys):
    np.save(tmp_path / "c.npy", np.zeros((3, 2)))
    argv = ["distances", str(tmp_path / "c.npy"), "--analytic", "cylinder", "--architecture", "a:b"]
    code, _, err = _run([*argv, "--out", str(tmp_path / "s")], capsys)
    assert code == 2 and "--architecture goes with --state-dict only" in err
