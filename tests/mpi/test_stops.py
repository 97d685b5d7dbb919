"""A second Ctrl-C: the run stops at once, and its run file says it was interrupted.

The first SIGINT asks for a graceful stop (finish the round, checkpoint, exit 75) and rank
0 marks the run file ``interrupted`` at once; a second one ends the job before the round
ends: mpiexec kills every rank itself, a single process exits with 130. Either way the
file then says ``interrupted`` with the rounds completed, never ``running``.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from hpc_fedprune.analysis import load_run
from hpc_fedprune.errors import InputError
from tests.e2e.conftest import TINY, cli
from tests.helpers import REPO, child_env, mpiexec_path

pytestmark = [pytest.mark.mpi]

# Rank 0 sleeps in round 2, after round 1 is recorded: a round that takes long.
SLOW_ROUND_2 = "rank=0,round=2,point=train,action=sleep,seconds=120"


def wait_for(condition, proc, what: str, limit_s: float = 90) -> None:
    """Poll ``condition`` while the program runs (a deadline, not a timing assertion)."""
    deadline = time.monotonic() + limit_s
    while not condition():
        assert proc.poll() is None, f"the program ended before {what}: {proc.communicate()}"
        assert time.monotonic() < deadline, f"no {what} after {limit_s} s"
        time.sleep(0.2)


def status(out):
    try:
        return load_run(out).status
    except InputError:  # not created yet
        return None


def launch(command, out):
    argv = ["-m", "hpc_fedprune", "run", "--out", str(out), *TINY, "federation.rounds=4"]
    return subprocess.Popen(
        [*command, sys.executable, *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env({"HPC_FEDPRUNE_FAULT": SLOW_ROUND_2}),
        cwd=REPO,
    )


def interrupt_twice(proc, out) -> tuple[str, str]:
    wait_for(lambda: status(out) == "running" and load_run(out).rounds_done == 1, proc, "round 1")
    proc.send_signal(signal.SIGINT)
    # The first Ctrl-C is recorded at once, while round 2 is still running.
    wait_for(lambda: status(out) == "interrupted", proc, "status interrupted")
    proc.send_signal(signal.SIGINT)
    return proc.communicate(timeout=60)


@pytest.mark.timeout(240)
def test_second_ctrl_c_under_mpiexec_leaves_the_run_interrupted(tmp_path):
    out = tmp_path / "run"
    proc = launch([str(mpiexec_path()), "-n", "2"], out)
    stdout, _ = interrupt_twice(proc, out)
    # Killed by mpiexec, not the graceful stop: no checkpoint line, no end-of-run line. (The
    # launcher's own exit status after its forced abort varies: 0 or 255 with MPICH.)
    assert proc.returncode != 75
    assert "stopped by signal" not in stdout and "done:" not in stdout
    run = load_run(out)
    assert run.status == "interrupted" and run.rounds_done == 1
    summary = cli("analyze", str(out), "--out", str(tmp_path / "analysis"))
    assert summary.returncode == 0 and "1 of 4: interrupted at round 1" in summary.stdout


@pytest.mark.timeout(240)
def test_second_ctrl_c_to_one_process_exits_130_in_one_line(tmp_path):
    out = tmp_path / "run"
    proc = launch([], out)
    _, stderr = interrupt_twice(proc, out)
    assert proc.returncode == 130
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "interrupted at once" in lines[0], stderr
    run = load_run(out)
    assert run.status == "interrupted" and run.rounds_done == 1
