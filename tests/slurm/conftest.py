"""A one-node Slurm for the tests in this folder, and helpers to submit and wait for jobs.

The session fixture `slurm` installs Debian's slurmctld, slurmd, slurm-client and munge
(root and apt-get only), starts them through local_slurm.sh, waits for the node to be idle
and stops the daemons at the end. Where that cannot be done here (not root, no apt, the
install fails, a site slurm.conf is present) every test that uses it is SKIPPED with the
reason, never passed. A start that fails after a good install is a failure.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import REPO, child_env

HERE = Path(__file__).resolve().parent
LOCAL_SLURM = HERE / "local_slurm.sh"
JOBS = REPO / "jobs"
STATE = Path("/var/tmp/hpc_fedprune-slurm")  # local_slurm.sh's default: its logs are there

# Job states after which a job does not run again (a requeued job is PENDING, not one of these).
TERMINAL = {
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "PREEMPTED",
    "BOOT_FAIL",
    "DEADLINE",
    "SPECIAL_EXIT",
}

# Variables the job scripts read: cleared so that a developer's shell cannot leak into a test.
SCRIPT_VARIABLES = (
    "CONFIG",
    "OVERRIDES",
    "RUN_NAME",
    "RUNS_DIR",
    "RUN_DIR",
    "FEDPRUNE_DIR",
    "VENV",
    "PYTHON",
    "LAUNCHER",
    "SRUN_MPI",
    "SRUN_FLAGS",
    "MPIRUN",
    "MPIRUN_FLAGS",
    "MAX_RESTARTS",
    "SWEEP_FILE",
    "SWEEP_INDEX",
)


def _local_slurm(action: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(LOCAL_SLURM), action],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "(no message)"


class Slurm:
    """Submit jobs to the local cluster and wait for them, every wait with a timeout."""

    def job_env(self, runs_dir: Path, **extra: str) -> dict[str, str]:
        """Environment for sbatch (exported to the job): this interpreter, this checkout."""
        env = child_env()
        for name in SCRIPT_VARIABLES:
            env.pop(name, None)
        env.update(
            FEDPRUNE_DIR=str(REPO), VENV=sys.prefix, PYTHON=sys.executable, RUNS_DIR=str(runs_dir)
        )
        env.update(extra)
        return env

    def sbatch(self, args: list[str], env: dict[str, str]) -> int:
        """Run `sbatch --parsable ARGS` (or a command that ends in it) and return the job id."""
        cmd = args if args[0] == "bash" else ["sbatch", "--parsable", *args]
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
        )
        assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout}{proc.stderr}"
        return int(proc.stdout.strip().split(";")[0])

    def records(self, job: int) -> list[dict[str, str]]:
        """`scontrol show job -o`: one dict per job (per array task)."""
        proc = subprocess.run(
            ["scontrol", "show", "job", "-o", str(job)], capture_output=True, text=True, timeout=30
        )
        assert proc.returncode == 0, f"scontrol show job {job}: {proc.stderr.strip()}"
        return [
            dict(re.findall(r"(\w+)=(\S*)", line))
            for line in proc.stdout.splitlines()
            if line.strip()
        ]

    def wait(self, job: int, timeout: float, logs: list[Path] = ()) -> list[dict[str, str]]:
        """Wait until every record of `job` is in a terminal state; cancel it on a timeout."""
        deadline = time.monotonic() + timeout
        while True:
            records = self.records(job)
            if records and all(r.get("JobState") in TERMINAL for r in records):
                return records
            if time.monotonic() > deadline:
                subprocess.run(["scancel", str(job)], timeout=30)
                raise AssertionError(
                    f"job {job} not done after {timeout:.0f} s: "
                    f"{[r.get('JobState') for r in records]}\n" + self.diagnostics(logs)
                )
            time.sleep(1)

    def diagnostics(self, logs: list[Path] = ()) -> str:
        """The job logs and the daemons' last lines, for a failure message."""
        parts = []
        for path in [*logs, STATE / "slurmctld.log", STATE / "slurmd.log"]:
            for p in sorted(Path(path).parent.glob(Path(path).name)):
                text = p.read_text(errors="replace").splitlines()[-40:]
                parts.append(f"--- {p} (last lines)\n" + "\n".join(text))
        return "\n".join(parts)


@pytest.fixture(scope="session")
def slurm():
    """A running one-node Slurm (CPUs=8, MpiDefault=pmi2), stopped at the end of the session."""
    if shutil.which("bash") is None:
        pytest.skip("no local Slurm: no bash")
    try:
        install = _local_slurm("install", timeout=600)
    except subprocess.TimeoutExpired:
        pytest.skip("no local Slurm: installing the packages took more than 10 minutes")
    if install.returncode != 0:
        pytest.skip(f"no local Slurm: {_last_line(install.stderr or install.stdout)}")
    start = _local_slurm("start", timeout=180)
    if start.returncode == 3:
        pytest.skip(f"no local Slurm: {_last_line(start.stderr)}")
    if start.returncode != 0:
        pytest.fail(f"local Slurm did not start:\n{start.stdout}{start.stderr}")
    try:
        yield Slurm()
    finally:
        _local_slurm("stop", timeout=120)
