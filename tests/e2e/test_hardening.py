"""The program against damaged, edited, full or hostile surroundings (the command line).

Bad input is refused in one line with status 2 before anything is set up; a full disk
or file-size limit stops a run with status 74 and every completed round readable; a
checkpoint whose attributes were edited is not trusted; resuming keeps run.h5 the size of
an uninterrupted run and refuses an edited config.yaml.

Runs that need the simulator go through ``main`` in this process (torch imported once);
the bad-input cases launch the program as a user does.
"""

from __future__ import annotations

import contextlib
import io
import resource
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest
import yaml

from hpc_fedprune import faults
from hpc_fedprune.analysis import load_run
from hpc_fedprune.cli import main
from hpc_fedprune.comm.world import World
from tests.helpers import child_env, mounted_tmpfs, unwritable_folder

from .conftest import TINY, cli

# FedSparsify (mask records, client masks with the local variant) and server momentum
# (algorithm state in the checkpoint); a checkpoint every 2 rounds.
CONFIG = [
    *TINY,
    "federation.rounds=8",
    "output.checkpoint_every=2",
    "output.progress=false",
    "algorithm.name=fedsparsify",
    "algorithm.fedsparsify.variant=local",
    "federation.server_momentum=0.5",
]


def run_here(*argv, fault: str | None = None) -> tuple[int, str, str]:
    """``python -m hpc_fedprune ARGV`` in this process: (status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    spec = None if fault is None else faults._parse(fault)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(faults, "FAULT", spec)
        mp.setattr(World, "finalize", lambda self: None)  # MPI stays up for the next run
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


# --- bad input: one line, status 2, nothing written, before set-up --------------------


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "args, message",
    [
        (["training.lr=nan"], "training.lr: nan is not a finite number"),
        (["federation.server_lr=inf"], "federation.server_lr: inf is not a finite number"),
        (
            ["algorithm.name=fedsparsify", "algorithm.fedsparsify.final_sparsity=.nan"],
            "algorithm.fedsparsify.final_sparsity: nan is not a finite number",
        ),
        (["data.name=fashion_mnist", "data.root=/nonexistent"], "data.root: /nonexistent"),
        (["output.name=../escape"], "output.name: '../escape' must be a plain folder name"),
        (["output.name=/tmp/abs"], "output.name: '/tmp/abs' must be a plain folder name"),
    ],
)
def test_bad_config_is_refused_before_set_up(tmp_path, args, message):
    out = tmp_path / "r"
    proc = cli("run", "--out", str(out), *args)
    assert proc.returncode == 2
    assert message in one_line(proc.stderr)
    assert not out.exists() and "Traceback" not in proc.stderr


@pytest.mark.timeout(120)
def test_a_bad_output_name_escapes_nowhere(tmp_path):
    # Without --out the name is joined under runs/ of the working directory.
    proc = subprocess.run(
        [sys.executable, "-m", "hpc_fedprune", "run", "output.name=../escape"],
        capture_output=True,
        text=True,
        timeout=120,
        env=child_env(),
        cwd=tmp_path,
    )
    assert proc.returncode == 2 and "output.name" in one_line(proc.stderr)
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def read_only_dir(tmp_path):
    """A folder this process cannot write to (`tests.helpers.unwritable_folder`)."""
    with unwritable_folder(tmp_path) as folder:
        yield folder


@pytest.mark.timeout(120)
def test_unwritable_out_is_one_line_before_set_up(read_only_dir):
    proc = cli("run", "--out", str(read_only_dir / "run"), *TINY)
    assert proc.returncode == 2
    assert "cannot write to" in one_line(proc.stderr)
    assert "hpc_fedprune:" not in proc.stdout  # refused before the set-up was built


@pytest.mark.timeout(120)
def test_resume_of_a_folder_without_a_run_says_so(tmp_path):
    (tmp_path / "empty").mkdir()
    proc = cli("run", "--resume", str(tmp_path / "empty"))
    assert proc.returncode == 2
    assert f"{tmp_path / 'empty'} holds no run to resume" in one_line(proc.stderr)


@pytest.mark.timeout(120)
def test_analyze_refuses_a_file_that_claims_more_than_it_holds(tmp_path):
    out = tmp_path / "forged"
    code, _, err = run_here("run", "--out", str(out), *TINY, "output.progress=false")
    assert code == 0, err
    with h5py.File(out / "run.h5", "a") as f:
        f["metrics/test_loss"].resize((10**10,))  # 74.5 GiB of rows that are not there
    proc = cli("analyze", str(out))
    assert proc.returncode == 2
    assert "claims 10000000000 rows" in one_line(proc.stderr)


# --- checkpoints and resume -----------------------------------------------------------


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run."""
    out = tmp_path_factory.mktemp("reference") / "run"
    code, _, err = run_here("run", "--out", str(out), *CONFIG)
    assert code == 0, err
    return out


@pytest.fixture(scope="module")
def stopped(tmp_path_factory):
    """The same run stopped by SIGTERM in round 7: checkpoints after rounds 6 and 7."""
    out = tmp_path_factory.mktemp("stopped") / "run"
    code, _, err = run_here(
        "run", "--out", str(out), *CONFIG, fault="rank=0,round=7,point=train,action=term"
    )
    assert code == 75, err
    return out


def same_results(a, b) -> None:
    ra, rb = load_run(a), load_run(b)
    assert ra.final_model()[0].tobytes() == rb.final_model()[0].tobytes()
    assert list(rb.metrics["round"]) == list(range(1, 9))
    for name in ra.metrics:
        if name not in ("wall_s", "mpi_bytes"):
            assert np.array_equal(ra.metrics[name], rb.metrics[name], equal_nan=True), name


@pytest.mark.timeout(200)
def test_an_edited_checkpoint_attribute_is_not_trusted(stopped, reference, tmp_path):
    out = shutil.copytree(stopped, tmp_path / "run")
    with h5py.File(out / "checkpoint.h5", "a") as f:
        assert f["checkpoint"].attrs["round"] == 7
        f["checkpoint"].attrs["round"] = 5  # the snapshot still holds 7 rounds
    code, _, err = run_here("run", "--resume", str(out))
    assert code == 0, err
    assert "checkpoint.h5 is damaged (checkpoint.h5: checksum mismatch)" in err
    same_results(reference, out)  # resumed from checkpoint.prev.h5 (round 6)


@pytest.mark.timeout(200)
def test_both_checkpoints_edited_is_status_2(stopped, tmp_path):
    out = shutil.copytree(stopped, tmp_path / "run")
    for name in ("checkpoint.h5", "checkpoint.prev.h5"):
        with h5py.File(out / name, "a") as f:
            f.attrs["rounds_done"] = 1
    code, _, err = run_here("run", "--resume", str(out))
    assert code == 2 and "no intact checkpoint" in err.splitlines()[-1]


@pytest.mark.timeout(200)
def test_an_edited_config_yaml_is_refused_on_resume(stopped, tmp_path):
    out = shutil.copytree(stopped, tmp_path / "run")
    raw = yaml.safe_load((out / "config.yaml").read_text())
    raw["training"]["lr"] = 0.5
    (out / "config.yaml").write_text(yaml.safe_dump(raw))
    before = (out / "run.h5").read_bytes()
    code, _, err = run_here("run", "--resume", str(out))
    assert code == 2
    assert "training.lr: 0.1 in the run, 0.5 in config.yaml" in one_line(err)
    assert (out / "run.h5").read_bytes() == before


@pytest.mark.timeout(300)
def test_resuming_three_times_keeps_the_size_of_an_uninterrupted_run(reference, tmp_path):
    out = tmp_path / "run"
    code, _, err = run_here(
        "run", "--out", str(out), *CONFIG, fault="rank=0,round=3,point=train,action=term"
    )
    assert code == 75, err
    for stop_round in (5, 7, None):
        fault = None if stop_round is None else f"rank=0,round={stop_round},action=term"
        code, _, err = run_here("run", "--resume", str(out), fault=fault)
        assert code == (0 if stop_round is None else 75), err
    same_results(reference, out)
    with h5py.File(out / "run.h5", "r") as f:
        assert "checkpoint" not in f and list(f.attrs["resumed_at"]) == [3, 5, 7]
    size, uninterrupted = (out / "run.h5").stat().st_size, (reference / "run.h5").stat().st_size
    # Each checkpoint of this run holds ~60 kB (weights, momentum, mask): three resumes
    # that kept them would be ~180 kB larger.
    assert abs(size - uninterrupted) < 16_000, (size, uninterrupted)


# --- a full disk: status 74, one line, every completed round readable ------------------


def assert_completed_rounds_intact(out, expect_file: str, stderr: str) -> int:
    """The one-line error names the file; run.h5 and metrics.jsonl agree; no .tmp left."""
    line = one_line(stderr)
    assert line.startswith(f"error: cannot write {out / expect_file}: ")
    assert not list(out.glob("*.tmp"))
    run = load_run(out)
    rounds = run.rounds_done
    assert rounds >= 1 and list(run.metrics["round"]) == list(range(1, rounds + 1))
    assert len((out / "metrics.jsonl").read_text().splitlines()) == rounds
    assert all(record.round <= rounds for record in run.iter_masks())  # readable to the end
    return rounds


@contextlib.contextmanager
def file_size_limit(limit: int):
    """RLIMIT_FSIZE on this process for the block (the soft limit; raised again after)."""
    World.from_mpi()  # MPI's shared-memory files are made first, without the limit
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


@pytest.mark.timeout(200)
@pytest.mark.parametrize(
    "checkpoint_every, expect_file, extra, limit",
    [
        (0, "run.h5", [], 300_000),
        # A checkpoint holds no history: to reach the limit there first, FedAvgM with a
        # model whose checkpoint (weights and momentum, float32: ~1.3 MB) is larger than
        # the run file of a few rounds.
        (2, "checkpoint.h5.tmp", ["algorithm.name=fedavg", "model.mlp.hidden=[1024]"], 600_000),
    ],
)
def test_a_file_size_limit_stops_the_run_with_74(
    tmp_path, checkpoint_every, expect_file, extra, limit
):
    out = tmp_path / "run"
    argv = ["run", "--out", str(out), *CONFIG, "federation.rounds=100", *extra]
    argv.append(f"output.checkpoint_every={checkpoint_every}")
    # Room for a few rounds (the program ignores SIGXFSZ, so a write past the limit
    # fails with EFBIG instead of killing the process).
    with file_size_limit(limit):
        code, _, err = run_here(*argv)
    assert code == 74, err
    assert "File too large" in err
    rounds = assert_completed_rounds_intact(out, expect_file, err)
    assert rounds < 100
    assert load_run(out).status == "failed"


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 600 kB tmpfs (root only; skipped where mounting is not allowed)."""
    with mounted_tmpfs(tmp_path / "tmpfs", "size=600k") as mount:
        yield mount


@pytest.mark.timeout(200)
def test_a_full_disk_stops_the_run_with_74(small_tmpfs):
    out = small_tmpfs / "run"
    code, _, err = run_here("run", "--out", str(out), *CONFIG, "federation.rounds=100")
    assert code == 74, err
    assert "No space left on device" in err
    line = one_line(err)
    expect = "checkpoint.h5.tmp" if "checkpoint.h5.tmp" in line else "run.h5"
    assert_completed_rounds_intact(out, expect, err)
