"""Stage 1 of ``run``: the config and the paths, checked before anything heavy is imported."""

from __future__ import annotations

import subprocess
import sys
from argparse import Namespace

import pytest

from hpc_fedprune.config.load import ABSENT, config_differences, load_config
from hpc_fedprune.errors import InputError
from hpc_fedprune.preflight import plan_run
from tests.helpers import REPO, child_env, unwritable_folder


def args(*overrides, out=None, resume=None, config=None) -> Namespace:
    return Namespace(config=config, out=out, resume=resume, overrides=list(overrides))


@pytest.mark.parametrize(
    "override",
    [
        "training.lr=nan",
        "training.lr=.nan",
        "federation.server_lr=inf",
        "federation.server_lr=-.inf",
        "algorithm.fedsparsify.final_sparsity=.nan",
        "partition.sizes=[1.0, .nan, 2.0]",
    ],
)
def test_nan_and_infinity_are_refused_naming_the_key(override):
    key = override.split("=")[0]
    with pytest.raises(InputError, match=rf"^{key.replace('.', '[.]')}(\[1\])?: .* finite"):
        load_config(None, [override])


@pytest.mark.parametrize("name", ["../escape", "/abs/path", "a/b", "a\\b", "..", ".", ""])
def test_output_name_is_one_folder_name(name):
    with pytest.raises(InputError, match="output.name: .* plain folder name"):
        load_config(None, [f"output.name={name!r}"])


def test_an_ordinary_name_makes_the_default_folder():
    plan = plan_run(args("output.name=sweep-3_a"))
    assert plan.out_dir.parent.name == "runs" and plan.out_dir.name.startswith("sweep-3_a-")


def test_data_root_must_exist(tmp_path):
    with pytest.raises(InputError, match="data.root: /nonexistent/x does not exist"):
        plan_run(args("data.name=fashion_mnist", "data.root=/nonexistent/x", out=str(tmp_path)))
    (tmp_path / "file").write_text("")
    with pytest.raises(InputError, match="is not a folder"):
        plan_run(args(f"data.root={tmp_path / 'file'}", out=str(tmp_path / "r")))
    plan_run(args(f"data.root={tmp_path}", out=str(tmp_path / "r")))  # an existing folder


@pytest.fixture
def read_only_dir(tmp_path):
    """A folder this process cannot write to (`tests.helpers.unwritable_folder`)."""
    with unwritable_folder(tmp_path) as folder:
        yield folder


def test_unwritable_out_is_refused_before_set_up(read_only_dir):
    with pytest.raises(InputError, match=r"--out .*: cannot write to .*ro \(permission denied\)"):
        plan_run(args(out=str(read_only_dir / "new" / "run")))


def test_out_under_a_file_and_an_existing_run_are_refused(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(InputError, match="is not a directory"):
        plan_run(args(out=str(tmp_path / "file" / "run")))
    (tmp_path / "done").mkdir()
    (tmp_path / "done" / "run.h5").write_text("")
    with pytest.raises(InputError, match="already holds a run"):
        plan_run(args(out=str(tmp_path / "done")))


def test_resume_needs_a_folder_that_holds_a_run(tmp_path):
    with pytest.raises(InputError, match="no such folder"):
        plan_run(args(resume=str(tmp_path / "missing")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds no run to resume"):
        plan_run(args(resume=str(tmp_path / "empty")))
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "checkpoint.h5").write_text("")
    with pytest.raises(InputError, match="holds no config.yaml"):
        plan_run(args(resume=str(tmp_path / "half")))
    with pytest.raises(InputError, match="takes the run's own config"):
        plan_run(args("training.lr=1", resume=str(tmp_path / "half")))


def test_config_differences_compare_resolved_values():
    recorded = {"training": {"lr": 0.1}, "federation": {"rounds": 5}}
    edited = {"training": {"lr": 0.5}, "output": {"progress": True}}  # progress: its default
    assert config_differences(recorded, edited) == [("training.lr", 0.1, 0.5)]
    # A config that no longer builds (another version's keys) is compared as written.
    assert config_differences({"old": {"key": 1}}, {"old": {"key": 1}, "x": 2}) == [
        ("x", ABSENT, 2)
    ]


def test_stage_one_imports_neither_torch_nor_the_simulator():
    code = (
        "import sys\n"
        "from argparse import Namespace\n"
        "from hpc_fedprune.preflight import plan_run\n"
        "try:\n"
        "    plan_run(Namespace(config=None, out=None, resume=None, overrides=['x.y=1']))\n"
        "except Exception:\n"
        "    pass\n"
        "heavy = [m for m in ('torch', 'hpc_fedprune.sim.loop') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=child_env(), cwd=REPO
    )
    assert proc.stdout.strip() == "[]", proc.stdout + proc.stderr
