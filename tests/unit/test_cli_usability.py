"""The command line, in process: overrides anywhere, --version, config printing and shipped
files, messages that say how to fix things, and a quiet end when stdout goes away."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from hpc_fedprune import __version__
from hpc_fedprune.cli import main, parse_command_line
from hpc_fedprune.config import load_config
from hpc_fedprune.errors import EXIT_INPUT, EXIT_OK, InputError
from tests.helpers import REPO


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "--config", "X", "a.b=1", "--out", "D", "c.d=2"],
        ["run", "a.b=1", "--config", "X", "c.d=2", "--out", "D"],
        ["run", "--out", "D", "--config", "X", "a.b=1", "c.d=2"],
        ["run", "a.b=1", "c.d=2", "--out", "D", "--config", "X"],
    ],
)
def test_overrides_stand_anywhere_and_keep_their_order(argv) -> None:
    args = parse_command_line(argv)
    assert (args.config, args.out, args.overrides) == ("X", "D", ["a.b=1", "c.d=2"])


def test_loose_words_of_other_commands() -> None:
    args = parse_command_line(["privacy", "R", "privacy.samples=10", "--out", "F", "b=2"])
    assert (args.run, args.out, args.overrides) == ("R", "F", ["privacy.samples=10", "b=2"])
    args = parse_command_line(["compare", "a", "--out", "D", "b", "--format", "pdf"])
    assert (args.runs, args.out, args.format) == (["a", "b"], "D", "pdf")
    args = parse_command_line(["config", "show", "a=1", "--config", "c.yaml", "b=2"])
    assert (args.config, args.overrides) == ("c.yaml", ["a=1", "b=2"])


def test_later_override_wins_wherever_it_stands(tmp_path: Path) -> None:
    args = parse_command_line(
        ["config", "show", "federation.rounds=2", "--used", "federation.rounds=4"]
    )
    assert load_config(None, args.overrides).federation.rounds == 4


@pytest.mark.parametrize(
    "argv, message",
    [
        (["run", "--ouut", "D"], "run: unrecognized arguments: --ouut; did you mean --out?"),
        (
            ["config", "show", "--usd"],
            "config show: unrecognized arguments: --usd; did you mean --used?",
        ),
        (["analyze", "R", "extra"], "analyze: unrecognized arguments: extra"),
        (["compare", "a", "--lables", "x"], "did you mean --labels?"),
    ],
)
def test_misspelt_options_are_one_line_and_status_2(argv, message, capsys) -> None:
    assert main(argv) == EXIT_INPUT
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    with pytest.raises(InputError):
        parse_command_line(argv)


def test_version(capsys) -> None:
    assert main(["--version"]) == EXIT_OK
    assert capsys.readouterr().out.strip() == f"hpc_fedprune {__version__}"


def test_did_you_mean_names_the_full_key(capsys) -> None:
    assert main(["config", "show", "federation.round=3"]) == EXIT_INPUT
    assert "did you mean 'federation.rounds'?" in capsys.readouterr().err
    assert main(["config", "show", "model.mlp.hiden=[4]"]) == EXIT_INPUT
    assert "did you mean 'model.mlp.hidden'?" in capsys.readouterr().err


def test_config_keys_prints_yaml_that_reads_back(capsys) -> None:
    assert main(["config", "keys"]) == EXIT_OK
    text = capsys.readouterr().out
    assert "data.root = null\n" in text and "None" not in text
    assert "training.drop_last = false\n" in text
    assert "model.mlp.hidden = [128, 128]\n" in text
    # Every printed default, typed back as an override, gives the default config.
    overrides = [
        line.replace(" = ", "=", 1) for line in text.splitlines() if not line.startswith(" ")
    ]
    assert len(overrides) > 40
    assert load_config(None, overrides) == load_config()
    main(["config", "keys", "--markdown"])
    assert "| `data.root` | `null` |" in capsys.readouterr().out


def test_python_none_is_refused_where_null_is_meant() -> None:
    with pytest.raises(InputError, match="data.root: 'None' is a string here; write null"):
        load_config(None, ["data.root=None"])
    assert load_config(None, ["data.root=null"]).data.root is None


def test_config_show_used_drops_what_the_run_does_not_read(capsys) -> None:
    argv = ["config", "show", "--used", "algorithm.name=fedsparsify", "model.name=mlp"]
    assert main(argv) == EXIT_OK
    used = yaml.safe_load(capsys.readouterr().out)
    assert set(used["algorithm"]) == {"name", "fedsparsify"}
    assert set(used["model"]) == {"name", "init", "mlp"}
    assert used["privacy"] == {"enabled": False}
    assert used["training"] == yaml.safe_load(main_output(["config", "show"]))["training"]
    # What is left loads back to the same run.
    loaded = load_config(None, ["algorithm.name=fedsparsify", "model.name=mlp"])
    main(argv)
    again = yaml.safe_load(capsys.readouterr().out)
    assert again["algorithm"]["fedsparsify"]["final_sparsity"] == (
        loaded.algorithm.fedsparsify.final_sparsity
    )
    main(["config", "show", "--used", "privacy.enabled=true"])
    assert "shadow_models" in yaml.safe_load(capsys.readouterr().out)["privacy"]


def main_output(argv: list[str]) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "hpc_fedprune", *argv],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
    )
    return proc.stdout


def test_config_list_and_copy(tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    assert main(["config", "list"]) == EXIT_OK
    listing = capsys.readouterr().out
    for name in ("configs/quickstart.yaml", "configs/fedavg_fmnist_lenet5.yaml", "jobs/run.sbatch"):
        assert name in listing
    monkeypatch.chdir(tmp_path)
    assert main(["config", "copy", "fedavg_fmnist_lenet5", "run.sbatch"]) == EXIT_OK
    copied = tmp_path / "configs" / "fedavg_fmnist_lenet5.yaml"
    assert copied.read_bytes() == (REPO / "configs" / "fedavg_fmnist_lenet5.yaml").read_bytes()
    assert os.access(tmp_path / "jobs" / "run.sbatch", os.X_OK)
    # The README's command works on the copy as written.
    assert load_config("configs/fedavg_fmnist_lenet5.yaml").model.name == "lenet5"
    # Never overwrites, and copies nothing when any target exists.
    assert main(["config", "copy", "quickstart", "fedavg_fmnist_lenet5.yaml"]) == EXIT_INPUT
    assert "already exist" in capsys.readouterr().err
    assert not (tmp_path / "configs" / "quickstart.yaml").exists()
    assert main(["config", "copy", "jobs", "--to", "elsewhere"]) == EXIT_OK
    assert sorted(p.name for p in (tmp_path / "elsewhere").iterdir()) == sorted(
        p.name for p in (REPO / "jobs").iterdir() if p.is_file()
    )
    assert main(["config", "copy", "fedav_fmnist_lenet5"]) == EXIT_INPUT
    assert "did you mean fedavg_fmnist_lenet5.yaml" in capsys.readouterr().err


def test_privacy_rounds_after_the_end_says_how_to_fix_it() -> None:
    from hpc_fedprune.privacy.evaluate import plan_privacy

    config = load_config(
        None, ["federation.rounds=5", "privacy.enabled=true", "privacy.rounds=[2,7,9]"]
    )
    with pytest.raises(InputError) as info:
        plan_privacy(config, [np.arange(10)], np.arange(10, 20))
    message = str(info.value)
    assert message.startswith("privacy.rounds: [7, 9] after the last round (5)")
    assert "set privacy.rounds=[2] or raise federation.rounds to 9" in message
    # The suggested override is one shell word that the config accepts.
    assert load_config(None, ["federation.rounds=5", "privacy.rounds=[2]"]).privacy.rounds == (2,)


@pytest.mark.parametrize("argv", [["config", "keys"], ["config", "list"], ["config", "show"]])
def test_a_closed_pipe_ends_quietly(argv) -> None:
    """``... | head``: the reader is gone before anything is written."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    proc = subprocess.run(
        [sys.executable, "-m", "hpc_fedprune", *argv],
        stdout=write_end,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    os.close(write_end)
    assert proc.stderr == "" and proc.returncode == 0, proc.stderr


def test_analyze_into_a_closed_pipe_still_writes_its_files(tmp_path: Path) -> None:
    from tests.unit.runfile_factory import write_run

    run_dir = write_run(tmp_path / "r", masks={})
    read_end, write_end = os.pipe()
    os.close(read_end)
    argv = ["analyze", str(run_dir), "--out", str(tmp_path / "a")]
    proc = subprocess.run(
        [sys.executable, "-m", "hpc_fedprune", *argv],
        stdout=write_end,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    os.close(write_end)
    assert proc.stderr == "" and proc.returncode == 0, proc.stderr
    assert (tmp_path / "a" / "metrics.csv").exists()


def test_config_show_is_one_key_a_line_and_loads_back(tmp_path: Path, capsys) -> None:
    overrides = ["model.name=mlp", "model.mlp.hidden=[64,32]", "data.shape=[1,8,8]"]
    assert main(["config", "show", *overrides]) == EXIT_OK
    text = capsys.readouterr().out
    assert "data:\n  name: synthetic\n" in text and "    hidden: [64, 32]\n" in text
    path = tmp_path / "shown.yaml"
    path.write_text(text)
    assert load_config(path) == load_config(None, overrides)
