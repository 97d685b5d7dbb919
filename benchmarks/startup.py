"""Start-up at scale: seconds from launch to the end of round 1, per phase, and memory.

Launches ``mpiexec -n N`` of this script in ``--child`` mode, which runs the real command
line (``hpc_fedprune.cli.main(["run", ...])``, one round) with timing probes wrapped around
the functions that start each phase, so the program runs exactly as a user starts it. Each
rank notes when it finished each phase, in seconds since the launch:

- ``python``: the interpreter is up and this script starts;
- ``mpi_init``: ``World.from_mpi`` returned (mpi4py imported, MPI initialised);
- ``imports``: the run's modules are imported (torch among them): ``load_config`` is called;
- ``data``: the data set is loaded (generated, or read from shared memory) and the
  partition starts;
- ``partition``: the partition is done and the model build starts;
- ``model``: ``build_setup`` returned (model and algorithm built);
- ``first_round``: ``run_rounds`` returned after its one round (run file written).

Rank 0 prints one JSON line per launch: for each milestone the slowest rank's time
(``at_*``), for each phase the longest any rank spent in it (``phase_*``), the launcher's
wall clock, and memory from ``/proc/<pid>/smaps_rollup`` of every rank, read twice: after
the imports (``base_*``: torch, MPI, no data) and after round 1 (``run_*``). ``rss`` counts
every page a rank maps, shared ones in full for every rank; ``uss`` only the rank's
private pages; ``pss`` its private pages plus its share of each shared page (a page shared
by 8 ranks counts 1/8 for each), so the PSS of all ranks adds up to the memory they use
together (``node_pss_mb``; one node here). Per rank: mean and max over ranks.

    .venv/bin/python benchmarks/startup.py --ranks 1 16 64
    .venv/bin/python benchmarks/startup.py --ranks 8 -- data.name=fashion_mnist
    .venv/bin/python benchmarks/startup.py --ranks 2 --repo /path/to/other/checkout
    .venv/bin/python benchmarks/startup.py --literal --ranks 64   # the bare command, timed

``--literal`` times ``mpiexec -n N python -m hpc_fedprune run`` with the overrides and
nothing else (all its rounds; no probes). ``--repo`` runs another checkout of the program
(e.g. an older commit, to compare); the probes only need the function names above.
"""

from __future__ import annotations

import time

T_PYTHON = time.time()  # first thing: when the interpreter reached this script

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MILESTONES = ("python", "mpi_init", "imports", "data", "partition", "model", "first_round")
MEMORY = ("rss", "pss", "uss")


# ----------------------------------------------------------------------------- child


def memory_mb() -> dict[str, float]:
    """This process's resident memory (MiB): RSS, PSS and USS from smaps_rollup."""
    fields = {}
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2 and parts[0].endswith(":") and parts[1].isdigit():
                fields[parts[0][:-1]] = int(parts[1]) / 1024
    uss = fields.get("Private_Clean", 0.0) + fields.get("Private_Dirty", 0.0)
    return {"rss": fields.get("Rss", 0.0), "pss": fields.get("Pss", 0.0), "uss": uss}


def child(t0: float, out: str, overrides: list[str]) -> None:
    """One rank: the command line with probes; rank 0 prints the gathered JSON."""
    marks: dict[str, float] = {"python": T_PYTHON - t0}
    memory: dict[str, dict[str, float]] = {}

    def mark(name: str) -> None:
        marks.setdefault(name, time.time() - t0)

    def wrap(module, name: str, before: str | None = None, after: str | None = None):
        original = getattr(module, name)

        def probe(*args, **kwargs):
            if before:
                mark(before)
            result = original(*args, **kwargs)
            if after:
                mark(after)
            return result

        setattr(module, name, probe)

    import hpc_fedprune.config as config_pkg
    from hpc_fedprune.comm import world as world_mod

    from_mpi = world_mod.World.from_mpi.__func__

    def probed_from_mpi(cls):
        world = from_mpi(cls)
        mark("mpi_init")
        # As the program does next: import the run's modules; probes go on them first.
        import hpc_fedprune.sim.loop as loop_mod
        import hpc_fedprune.sim.setup as setup_mod

        wrap(setup_mod, "partition", before="data")
        wrap(setup_mod, "build_model", before="partition")
        wrap(setup_mod, "build_setup", after="model")
        run_rounds = loop_mod.run_rounds

        def probed_run_rounds(*args, **kwargs):
            result = run_rounds(*args, **kwargs)
            mark("first_round")
            memory["run"] = memory_mb()
            return result

        loop_mod.run_rounds = probed_run_rounds
        return world

    world_mod.World.from_mpi = classmethod(probed_from_mpi)
    load_config = config_pkg.load_config

    def probed_load_config(*args, **kwargs):
        mark("imports")
        memory["base"] = memory_mb()
        return load_config(*args, **kwargs)

    config_pkg.load_config = probed_load_config

    from hpc_fedprune.cli import main

    code = main(["run", "--out", out, *overrides, "federation.rounds=1"])
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    rows = comm.gather({"marks": marks, "memory": memory, "code": code}, root=0)
    if comm.Get_rank() == 0:
        print("STARTUP " + json.dumps(rows), flush=True)


# ----------------------------------------------------------------------------- parent


def summarise(rows: list[dict]) -> dict:
    """Milestones (slowest rank), phases (longest), memory (mean/max per rank, node sum)."""
    out: dict[str, float] = {}
    for name in MILESTONES:
        values = [r["marks"][name] for r in rows if name in r["marks"]]
        out[f"at_{name}"] = round(max(values), 2) if values else None
    for prev, name in zip(MILESTONES, MILESTONES[1:]):
        spans = [
            r["marks"][name] - r["marks"][prev]
            for r in rows
            if name in r["marks"] and prev in r["marks"]
        ]
        out[f"phase_{name}"] = round(max(spans), 2) if spans else None
    for when in ("base", "run"):
        for kind in MEMORY:
            values = [r["memory"][when][kind] for r in rows if when in r["memory"]]
            if values:
                out[f"{when}_{kind}_mb_mean"] = round(sum(values) / len(values), 1)
                out[f"{when}_{kind}_mb_max"] = round(max(values), 1)
        pss = [r["memory"][when]["pss"] for r in rows if when in r["memory"]]
        out[f"{when}_node_pss_mb"] = round(sum(pss), 1) if pss else None
    return out


def launch(args, ranks: int, overrides: list[str]) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(args.repo), PYTHONUNBUFFERED="1")
    mpiexec = str(Path(sys.executable).with_name("mpiexec"))
    with tempfile.TemporaryDirectory(prefix="startup-") as tmp:
        out = str(Path(tmp) / "run")
        if args.literal:
            cmd = [mpiexec, "-n", str(ranks), sys.executable, "-m", "hpc_fedprune", "run",
                   "--out", out, *overrides]  # fmt: skip
        else:
            cmd = [mpiexec, "-n", str(ranks), sys.executable, str(Path(__file__).resolve()),
                   "--child", "--t0", "T0", "--out", out, "--", *overrides]  # fmt: skip
        t0 = time.time()
        cmd = [str(t0) if c == "T0" else c for c in cmd]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=args.repo)
        wall = time.time() - t0
    row = {
        "bench": "startup",
        "kind": "literal" if args.literal else "phases",
        "label": args.label,
        "ranks": ranks,
        "overrides": overrides,
        "exit": proc.returncode,
        "wall_s": round(wall, 2),
        "load_avg": round(os.getloadavg()[0], 1),
    }
    if proc.returncode != 0:
        row["stderr_tail"] = proc.stderr[-800:]
    for line in proc.stdout.splitlines():
        if line.startswith("STARTUP "):
            row.update(summarise(json.loads(line[len("STARTUP ") :])))
        elif "ranks idle" in line or "shared memory" in line:
            row.setdefault("notes", []).append(line.strip())
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--repo", type=Path, default=REPO, help="checkout of the program to run")
    parser.add_argument("--label", default="", help="a name for this series in the JSON")
    parser.add_argument("--literal", action="store_true", help="time the bare command only")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--t0", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", help="config overrides (after --)")
    args = parser.parse_args()
    if args.child:
        child(args.t0, args.out, args.overrides)
        return
    args.repo = args.repo.resolve()
    for ranks in args.ranks:
        print(json.dumps(launch(args, ranks, args.overrides)), flush=True)


if __name__ == "__main__":
    main()
