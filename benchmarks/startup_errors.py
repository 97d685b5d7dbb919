"""Seconds from launch to a config error, on 1 and 2 ranks.

A mistake in the config should show at once, not after every rank has imported torch.
This launches ``mpiexec -n N python -m hpc_fedprune run <bad input>`` (the venv's own
mpiexec) and times it to its exit, for two kinds of bad input: an unknown key, and a
``data.root`` that does not exist. Prints one JSON line per (case, ranks): the median and
the minimum of ``--repeat`` launches, with the exit status and the error line.

    .venv/bin/python benchmarks/startup_errors.py [--repo PATH] [--ranks 1 2] [--repeat 5]

``--repo`` times another checkout of the program (an older commit, say) with the same
interpreter, for a before/after comparison. Each line also gives the CPU seconds of the
launched processes (mpiexec and every rank, user + system), which a busy machine
stretches much less than the wall-clock time.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CASES = {
    "unknown_key": ["federation.round=2"],
    "missing_data_root": ["data.name=fashion_mnist", "data.root=/nonexistent"],
}


def launch(
    repo: Path, ranks: int, args: list[str], out: Path, timeout: float
) -> tuple[float, float, int | str, str]:
    """Seconds to exit, CPU seconds of the processes, the status, the last stderr line.

    A launch that has not ended after ``timeout`` seconds (a version that does not see
    the error and starts the run) is killed with its ranks; its status is ``"timeout"``.
    """
    mpiexec = Path(sys.executable).with_name("mpiexec")
    cmd = [str(mpiexec), "-n", str(ranks), sys.executable, "-m", "hpc_fedprune", "run"]
    cmd += ["--out", str(out), *args]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(repo))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=repo,
        start_new_session=True,
    )  # fmt: skip
    try:
        _, stderr = proc.communicate(timeout=timeout)
        status: int | str = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, stderr = proc.communicate()
        status = "timeout"
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    lines = [line for line in stderr.splitlines() if line.strip()]
    return seconds, cpu, status, lines[-1] if lines else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per launch")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for case, bad in CASES.items():
            for ranks in args.ranks:
                runs = [
                    launch(args.repo, ranks, bad, Path(tmp) / f"{case}-{ranks}-{i}", args.timeout)
                    for i in range(args.repeat)
                ]
                seconds = [s for s, _, _, _ in runs]
                cpu = [c for _, c, _, _ in runs]
                print(
                    json.dumps(
                        {
                            "bench": "startup_errors",
                            "repo": str(args.repo),
                            "case": case,
                            "ranks": ranks,
                            "repeat": args.repeat,
                            "seconds_median": round(statistics.median(seconds), 3),
                            "seconds_min": round(min(seconds), 3),
                            "cpu_s_median": round(statistics.median(cpu), 3),
                            "status": sorted({str(code) for _, _, code, _ in runs}),
                            "error": runs[-1][3],
                            "load_average": round(os.getloadavg()[0], 2),
                        }
                    ),
                    flush=True,
                )


if __name__ == "__main__":
    main()
