"""jobs/run.sbatch and jobs/sweep.sbatch on a real (one-node) Slurm, as a user submits them.

Every run is compared with a plain one-rank `python -m hpc_fedprune run` of the same config:
the same /model/flat bytes and metrics, whatever the world size. run.sbatch runs on 4 tasks
under `srun --mpi=pmi2` (the venv's MPICH), the sweep on 2 tasks per line; the jobs and the
reference runs are started together so that the module stays within a few minutes.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pytest
import yaml

from tests.e2e.conftest import TINY, assert_same_results, read_run
from tests.helpers import REPO, child_env

from .conftest import JOBS

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

TINY_YAML = "federation:\n  rounds: 3\n"  # the sweep's second line uses a config file


def reference_run(out: Path, args: list[str]) -> subprocess.Popen:
    """Start a plain one-rank run (no mpiexec, no Slurm) in the background."""
    return subprocess.Popen(
        [sys.executable, "-m", "hpc_fedprune", "run", "--out", str(out), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=child_env(),
        cwd=REPO,
        stdin=subprocess.DEVNULL,
    )


def finish(proc: subprocess.Popen, out: Path, timeout: float = 300) -> dict:
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    assert proc.returncode == 0, output
    return read_run(out / "run.h5")


def sweep_list(sweep_file: Path, env: dict[str, str]) -> list[tuple[str, Path]]:
    """`bash jobs/sweep.sbatch --list FILE`: (status, run directory) per line."""
    proc = subprocess.run(
        ["bash", str(JOBS / "sweep.sbatch"), "--list", str(sweep_file)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    rows = re.findall(r"^\s*\d+\s+(\S+)\s+(\S.*)$", proc.stdout, flags=re.M)
    return [(status, Path(path)) for status, path in rows]


def job_ok(record: dict[str, str]) -> bool:
    return record.get("JobState") == "COMPLETED" and record.get("ExitCode") == "0:0"


@pytest.fixture(scope="module")
def submitted(slurm, tmp_path_factory):
    """run.sbatch on 4 tasks and a 2-line sweep, submitted together, with their references."""
    base = tmp_path_factory.mktemp("slurm")
    runs = base / "runs"
    config = base / "tiny.yaml"
    config.write_text(TINY_YAML)
    line2 = [o for o in TINY if not o.startswith(("federation.rounds=", "runtime.seed="))]
    line2 = [str(config), *line2, "runtime.seed=4"]
    sweep_file = base / "tiny_sweep.txt"
    sweep_file.write_text(f"# two runs\n{shlex.join(TINY)}\n\n{shlex.join(line2)}  # seed 4\n")
    env = slurm.job_env(runs)

    run_log = base / "run-%j.out"
    run_job = slurm.sbatch(
        ["--nodes=1", "--ntasks-per-node=4", f"--output={run_log}", str(JOBS / "run.sbatch")],
        {**env, "OVERRIDES": shlex.join(TINY), "RUN_NAME": "tiny"},
    )
    sweep_log = base / "sweep-%A_%a.out"
    submit = [
        "bash",
        str(JOBS / "sweep.sbatch"),
        "--submit",
        str(sweep_file),
        "--parsable",
        "--nodes=1",
        "--ntasks-per-node=2",
        f"--output={sweep_log}",
    ]
    sweep_env = {**env, "LAUNCHER": "mpirun"}  # the other launcher: the venv's mpiexec
    sweep_job = slurm.sbatch(submit, sweep_env)

    refs = {
        "tiny": reference_run(base / "ref_tiny", TINY),
        "seed4": reference_run(base / "ref_seed4", ["--config", str(config), *line2[1:]]),
    }
    reference = {name: finish(proc, base / f"ref_{name}") for name, proc in refs.items()}
    return {
        "base": base,
        "runs": runs,
        "env": sweep_env,
        "sweep_file": sweep_file,
        "submit": submit,
        "run_job": run_job,
        "sweep_job": sweep_job,
        "reference": reference,
        "run_log": Path(str(run_log).replace("%j", str(run_job))),
        "sweep_log": sweep_log,
        "sweep_logs": sweep_logs(sweep_log, sweep_job),
    }


def sweep_logs(template: Path, job: int) -> list[Path]:
    return [Path(str(template).replace("%A", str(job)).replace("%a", str(i))) for i in (1, 2)]


@pytest.mark.timeout(420)
def test_run_sbatch_on_4_tasks_is_bit_identical_to_one_rank(slurm, submitted):
    log = submitted["run_log"]
    records = slurm.wait(submitted["run_job"], timeout=300, logs=[log])
    assert job_ok(records[0]), f"{records[0]}\n{slurm.diagnostics([log])}"
    text = log.read_text()
    assert "srun --mpi=pmi2" in text and "round 3/3" in text, text
    out = submitted["runs"] / f"tiny-{submitted['run_job']}"
    with h5py.File(out / "run.h5", "r") as f:
        assert f.attrs["status"] == "finished"
        assert f.attrs["world_size"] == 4
    assert_same_results(submitted["reference"]["tiny"], read_run(out / "run.h5"))


@pytest.mark.timeout(420)
def test_sweep_runs_each_line_in_its_own_directory(slurm, submitted):
    logs = submitted["sweep_logs"]
    records = slurm.wait(submitted["sweep_job"], timeout=300, logs=logs)
    assert len(records) == 2 and all(job_ok(r) for r in records), (
        f"{records}\n{slurm.diagnostics(logs)}"
    )
    for log in logs:
        assert "/mpiexec -n 2 " in log.read_text(), log.read_text()
    rows = sweep_list(submitted["sweep_file"], submitted["env"])
    assert [status for status, _ in rows] == ["finished", "finished"], rows
    (_, first), (_, second) = rows
    assert first.parent == second.parent == submitted["runs"] / "tiny_sweep"
    assert first.name.startswith("quickstart_") and second.name.startswith("tiny_"), rows
    for (_, out), ref in zip(rows, ("tiny", "seed4"), strict=True):
        with h5py.File(out / "run.h5", "r") as f:
            assert f.attrs["status"] == "finished" and f.attrs["world_size"] == 2
        assert_same_results(submitted["reference"][ref], read_run(out / "run.h5"))
    resolved = yaml.safe_load((second / "config.yaml").read_text())
    assert resolved["runtime"]["seed"] == 4 and resolved["federation"]["rounds"] == 3
    assert read_run(first / "run.h5")["flat"] != read_run(second / "run.h5")["flat"]


@pytest.mark.timeout(300)
def test_sweep_resubmitted_skips_finished_runs(slurm, submitted):
    slurm.wait(submitted["sweep_job"], timeout=240, logs=submitted["sweep_logs"])
    rows = sweep_list(submitted["sweep_file"], submitted["env"])
    before = {out: (out / "run.h5").read_bytes() for _, out in rows}
    again = slurm.sbatch(submitted["submit"], submitted["env"])
    logs = sweep_logs(submitted["sweep_log"], again)
    records = slurm.wait(again, timeout=120, logs=logs)
    assert len(records) == 2 and all(job_ok(r) for r in records), slurm.diagnostics(logs)
    for log, (_, out) in zip(logs, rows, strict=True):
        text = log.read_text()
        assert f"skipped: {out} is already finished" in text, text
        assert "hpc_fedprune run" not in text, text
    assert {out: (out / "run.h5").read_bytes() for _, out in rows} == before


@pytest.mark.timeout(180)
def test_srun_without_pmi_is_refused(slurm, tmp_path):
    """Without PMI, srun starts N separate worlds of size 1 that would all write one run."""
    out = tmp_path / "run"
    proc = subprocess.run(
        [
            "srun",
            "--ntasks=3",
            "--mpi=none",
            sys.executable,
            "-m",
            "hpc_fedprune",
            "run",
            "--out",
            str(out),
            *TINY,
        ],
        capture_output=True,
        text=True,
        timeout=150,
        env=child_env(),
        cwd=REPO,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "--mpi=pmi2" in proc.stderr, proc.stderr
    assert not (out / "run.h5").exists()


# ---- preemption: USR1 before the time limit, or Slurm's own requeue -------------------------

PREEMPT = [*TINY, "federation.rounds=60", "output.checkpoint_every=5"]


def has_resume() -> bool:
    proc = subprocess.run(
        [sys.executable, "-m", "hpc_fedprune", "run", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env=child_env(),
        cwd=REPO,
    )
    return "--resume" in proc.stdout


@pytest.fixture(scope="module")
def preempted(slurm, tmp_path_factory):
    """Two 2-task jobs, each stopped after round 2 of 60: one by USR1 to the batch shell (what
    `--signal=B:USR1@120` does before the time limit), one by `scontrol requeue` (what a
    preemption with PreemptMode=REQUEUE does: TERM to everything, then Slurm requeues)."""
    if not has_resume():
        pytest.skip("needs checkpoint/resume (run --resume)")
    base = tmp_path_factory.mktemp("preempt")
    runs = base / "runs"
    env = slurm.job_env(runs, OVERRIDES=shlex.join(PREEMPT), RUN_NAME="preempt")
    jobs = {}
    for mode in ("usr1", "requeue"):
        log = base / f"{mode}-%j.out"
        job = slurm.sbatch(
            ["--nodes=1", "--ntasks-per-node=2", f"--output={log}", str(JOBS / "run.sbatch")], env
        )
        jobs[mode] = {
            "job": job,
            "log": Path(str(log).replace("%j", str(job))),
            "out": runs / f"preempt-{job}",
            "signalled": False,
        }
    ref = reference_run(base / "ref", PREEMPT)
    deadline = time.monotonic() + 240
    while not all(j["signalled"] for j in jobs.values()):  # signal each after its round 2
        for mode, j in jobs.items():
            metrics = j["out"] / "metrics.jsonl"
            if j["signalled"] or not metrics.exists() or len(metrics.read_text().splitlines()) < 2:
                continue
            cmd = (
                ["scancel", "--batch", "--signal=USR1", str(j["job"])]
                if mode == "usr1"
                else ["scontrol", "requeue", str(j["job"])]
            )
            subprocess.run(cmd, check=True, timeout=30)
            j["signalled"] = True
        if time.monotonic() > deadline:
            for j in jobs.values():
                subprocess.run(["scancel", str(j["job"])], timeout=30)
            ref.kill()
            ref.communicate()
            raise AssertionError(
                "no round 2 within 240 s\n" + slurm.diagnostics([j["log"] for j in jobs.values()])
            )
        time.sleep(0.2)
    reference = finish(ref, base / "ref")
    for j in jobs.values():
        j["records"] = slurm.wait(j["job"], timeout=300, logs=[j["log"]])
    return {"jobs": jobs, "reference": reference}


@pytest.mark.timeout(600)
@pytest.mark.parametrize("mode", ["usr1", "requeue"])
def test_preempted_job_requeues_resumes_and_matches_an_uninterrupted_run(slurm, preempted, mode):
    j = preempted["jobs"][mode]
    record = j["records"][0]
    text = j["log"].read_text()
    assert job_ok(record), f"{record}\n{text}"
    assert int(record["Restarts"]) >= 1, text
    expected = "got SIGUSR1" if mode == "usr1" else "got SIGTERM"
    assert expected in text and "status 'interrupted': resuming it" in text, text
    assert f"run --resume {j['out']}" in text, text
    with h5py.File(j["out"] / "run.h5", "r") as f:
        assert f.attrs["status"] == "finished" and f.attrs["world_size"] == 2
        stopped_after = list(f.attrs["resumed_at"])
        assert len(stopped_after) == 1 and 2 <= stopped_after[0] < 60, stopped_after
        assert list(f["metrics/round"][...]) == list(range(1, 61))
    assert_same_results(preempted["reference"], read_run(j["out"] / "run.h5"))
