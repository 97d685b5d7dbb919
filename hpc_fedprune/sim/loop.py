"""The round loop: one narrated loop for every method and every world size.

before round 1: exploration (AutoFLIP), initial mask (SNIP, PruneFL, random), broadcast
cohort   = sample(seed, round)                    same on every rank
mine     = schedule(cohort, rank)                 balanced by client size (whole groups
                                                  when training.group_size > 1)
fetch client state of mine from home ranks        only methods with client state
for c in mine:                                    one model object, loaded in place
    train c from the global model                 algorithm hooks: masks, penalty
    upload = algorithm.upload(...)                bytes counted from the encoding
    rank_sums += exact(upload.channels)           int64 fixed point, order-free
send new client state home                        (Top-k residuals)
sums = reduce(rank_sums) to rank 0                one collective per round
rank 0: global = algorithm.server_step(sums)      server update, server pruning
broadcast global weights and mask                 every rank holds the same bits
evaluate every k rounds, membership attacks at privacy.rounds
rank 0 writes the round to run.h5 and metrics.jsonl
"""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..algorithms.base import GlobalModel, RoundContext
from ..client_state.homes import ClientStates
from ..comm.world import World
from ..config import Config, to_yaml
from ..exchange import accounting
from ..exchange.accumulate import ExactAccumulator
from ..exploration.phase import include_cost, run_exploration
from ..faults import maybe_fail
from ..privacy import PrivacyEvaluator
from ..store import RunFile
from ..store.checkpoint import Checkpoint, write_checkpoint
from ..store.exploration import write_exploration
from ..training.clients import ClientTrainer
from ..training.evaluate import evaluate
from ..training.gradients import client_gradient, initial_trainer
from ..training.local import LocalTrainer
from .cohort import sample_cohort
from .setup import Setup, to_device
from .signals import StopFlag


@dataclass
class ClientRecord:
    """What rank 0 learns about one client of a round (gathered from every rank)."""

    client: int
    loss: float  # mean training loss over the client's local steps
    samples: int
    bytes_up: int  # encoded uplink
    value_bytes: int  # the values alone
    mask: dict[str, np.ndarray] | None  # client-local mask per tensor, when recorded


@dataclass
class RunResult:
    """What a run reports to the command line (meaningful on rank 0)."""

    out_dir: Path
    rounds: int
    metrics: dict[str, float]
    stopped: bool = False  # a stop signal ended the run early (checkpoint written)


def run_rounds(
    config: Config,
    world: World,
    setup: Setup,
    out_dir: Path,
    *,
    resume: Checkpoint | None = None,
    stop: StopFlag | None = None,
) -> RunResult:
    """Run the rounds of an experiment whose pieces are built; rank 0 writes ``out_dir``.

    ``resume`` (rank 0's checkpoint; None elsewhere, and ``resume_round`` agreed) continues
    after its round. ``stop`` is polled after every round.
    """
    fed = config.federation
    seed = config.runtime.seed
    device = setup.device
    ds = setup.dataset
    model, algorithm = setup.model, setup.algorithm
    x_train, y_train = to_device(ds.x_train, device), to_device(ds.y_train, device)
    x_test, y_test = to_device(ds.x_test, device), to_device(ds.y_test, device)
    trainer = LocalTrainer(model, config, ds.task, x_train, y_train)
    # One client at a time, or groups of clients in one batched step (training.group_size).
    clients = ClientTrainer(trainer, config, algorithm, setup.train_parts, announce=world.is_root)
    privacy = PrivacyEvaluator.from_setup(config, setup, x_train, y_train)
    states = ClientStates.for_run(config, world, algorithm)  # per-client state, home ranks
    metric_name = "test_accuracy" if ds.task == "classification" else "test_mae"

    weights = model.flat.detach().clone()

    def gradient(client, rng):  # for masks scored at initialisation (SNIP)
        return trainer.first_batch_gradient(weights, setup.train_parts[client], rng)

    # AutoFLIP's exploration phase scores the initial mask (not on resume: the checkpoint
    # holds the mask).
    exploration = None
    if algorithm.explores and world.bcast_object(resume is None):
        exploration = run_exploration(config, world, setup, trainer, weights)
        algorithm.set_exploration(exploration)
    # PruneFL trains one client before round 1: it gets a `train` callable too.
    tools = {}
    if algorithm.initial_training:
        tools["train"] = initial_trainer(trainer, setup.train_parts, config)
    current = GlobalModel(weights, algorithm.initial_mask(weights, gradient, **tools))
    if current.mask is not None:
        current.weights.mul_(current.mask)
    # A mask scored from a gradient could differ in its last bits between devices: rank 0's wins.
    current, _ = accounting.broadcast_model(world, current, None, device)

    runfile = RunFile(out_dir / "run.h5") if world.is_root else None
    devices = world.gather_objects(f"{socket.gethostname()}:{device}")
    first = 1
    resumed_round = world.bcast_object(None if resume is None else resume.round)
    if resumed_round is not None:
        current = restore_state(world, resume, algorithm, device)
        states.restore(resume.clients if world.is_root else None)
        first = resumed_round + 1
    elif world.is_root:
        create_outputs(config, world, setup, runfile, out_dir, devices)
        if exploration is not None:
            write_exploration(runfile.path, algorithm.exploration_record())
    start_time = time.perf_counter()
    last: dict[str, float] = {}
    for rnd in range(first, fed.rounds + 1):
        t_round = time.perf_counter()
        cohort = sample_cohort(seed, rnd, config.partition.num_clients, setup.cohort_size)
        mine = clients.schedule(cohort, setup.sizes, world.size, world.rank)
        states.fetch(mine)  # lent by their home ranks (collective)
        ctx = RoundContext(
            round=rnd,
            rounds=fed.rounds,
            seed=seed,
            lr=config.training.lr * config.training.lr_decay ** (rnd - 1),
            cohort_samples=int(setup.sizes[cohort].sum()),
            cohort_size=len(cohort),
        )
        sums = ExactAccumulator(algorithm.channel_bits, model.numel, len(cohort), device)
        records = []
        for client in mine.tolist():
            states.load(algorithm, client)
            algorithm.begin_client(ctx, current, client)
            result = clients.train(
                client=client,
                round_index=rnd,
                indices=setup.train_parts[client],
                start=current.weights,
                mask=algorithm.train_mask(ctx, current, client),
                lr=ctx.lr,
                algorithm=algorithm,
                forward_mask=algorithm.forward_mask(ctx, current, client),
            )
            maybe_fail("train", world.rank, rnd)
            local = model.flat
            if algorithm.needs_client_gradient(ctx):
                parts = setup.train_parts[client]
                grad = client_gradient(trainer, local, parts, seed, rnd, client)
                algorithm.local_gradient(ctx, current, client, grad)
            local_mask = algorithm.finish_local(ctx, current, local, client)
            accounting.round_to_wire_(local, config.comm.value_dtype)
            upload = algorithm.upload(ctx, current, local, local_mask, result.samples)
            wire = accounting.upload_info(upload, config.comm.value_dtype)
            sums.add(upload.channels)
            states.keep(algorithm, client)
            records.append(
                ClientRecord(
                    client,
                    result.loss,
                    result.samples,
                    wire.total_bytes,
                    wire.value_bytes,
                    local_mask_record(model, algorithm, local_mask, config),
                )
            )
        world.quiet_barrier()  # ranks done training sleep here, not spin in MPI (runtime.wait)
        states.send_back()  # new states to their home ranks (collective)
        maybe_fail("reduce", world.rank, rnd)
        shared = sums.tile(current.mask) if algorithm.channels_within_mask else None
        total, reduce_bytes = accounting.reduce_to_root(
            world, sums.packed(), config.comm.reduce, shared
        )

        # Server step on rank 0, then every rank receives the new global model.
        previous_mask = current.mask
        if world.is_root:
            merged = sums.unpack(total, device)
            current = algorithm.server_step(ctx, merged, current)
            # Zeros travel as +0.0; make rank 0's copy the same bits as everyone else's.
            current.weights.masked_fill_(current.weights == 0, 0.0)
        current, bcast_bytes = accounting.broadcast_model(world, current, previous_mask, device)
        gathered = world.gather_objects((records, reduce_bytes + bcast_bytes))

        if rnd % fed.eval_every == 0 or rnd == fed.rounds:
            model.load_(current.weights)
            scores = evaluate(
                model, x_test, y_test, task=ds.task, batch_size=fed.eval_batch_size, world=world
            )
            local_acc = evaluate_local(config, setup, model, x_train, y_train, world)
        else:
            scores, local_acc = {}, None
        attacked = None  # membership-inference rows (rank 0)
        if privacy is not None and privacy.due(rnd):
            t_attack = time.perf_counter()
            attacked = privacy.evaluate(model, current.weights, rnd, world)
            t_round += time.perf_counter() - t_attack  # the round's wall_s leaves attacks out
        if world.is_root:
            rows = sorted((r for part, _ in gathered for r in part), key=lambda r: r.client)
            mpi_bytes = sum(b for _, b in gathered)
            last = round_metrics(
                rnd,
                rows,
                scores,
                local_acc,
                current,
                setup,
                config,
                ds.task,
                mpi_bytes,
                time.perf_counter() - t_round,
            )
            last.update(algorithm.metrics())
            include_cost(last)  # exploration traffic counts in round 1's bytes
            maybe_fail("write", world.rank, rnd)
            # Round 1 records a mask fixed before it (initial_mask) as well.
            mask_changed = current.mask is not None and (
                rnd == 1 or previous_mask is None or not torch.equal(previous_mask, current.mask)
            )
            write_round(
                runfile, out_dir, rnd, last, rows, current, setup, algorithm, config, mask_changed
            )
            if attacked:
                runfile.append_privacy(attacked)
            if config.output.progress:
                elapsed = time.perf_counter() - start_time
                print(
                    progress_line(rnd, rnd - first + 1, fed.rounds, last, metric_name, elapsed),
                    flush=True,
                )
        # Every rank learns whether any was signalled, so all stop after the same round.
        stopping = world.any_flag(stop is not None and stop.raised) and rnd < fed.rounds
        every = config.output.checkpoint_every
        if stopping or (every and rnd % every == 0 and rnd < fed.rounds):
            client_state = states.gather()  # collective: every client's state to rank 0
            if world.is_root:
                write_checkpoint(out_dir, snapshot(rnd, current, algorithm, client_state))
        if stopping:
            if world.is_root:
                runfile.set_attrs(status="interrupted")
                print(
                    f"stopped by signal after round {rnd}; checkpoint written, resume with: "
                    f"python -m hpc_fedprune run --resume {out_dir}",
                    flush=True,
                )
            states.close()
            return RunResult(out_dir, rnd, last, stopped=True)
    if world.is_root:
        runfile.write_model(
            current.weights.cpu().numpy(),
            None if current.mask is None else current.mask.cpu().numpy(),
        )
        runfile.set_attrs(status="finished", wall_s=time.perf_counter() - start_time)
    states.close()
    return RunResult(out_dir, fed.rounds, last)


def snapshot(rnd: int, current: GlobalModel, algorithm, clients=None) -> Checkpoint:
    """Rank 0: the state a resumed run needs after round ``rnd`` (``clients``: client state)."""
    state = {k: (None if v is None else v.cpu().numpy()) for k, v in algorithm.state_dict().items()}
    mask = None if current.mask is None else current.mask.cpu().numpy()
    return Checkpoint(rnd, current.weights.cpu().numpy(), mask, state, clients or {})


def restore_state(world: World, resume: Checkpoint | None, algorithm, device) -> GlobalModel:
    """Global model to every rank, algorithm state to rank 0, from rank 0's checkpoint."""
    model = None
    if world.is_root:
        mask = None if resume.mask is None else torch.from_numpy(resume.mask).to(device)
        model = GlobalModel(torch.from_numpy(resume.weights).to(device), mask)
        algorithm.load_state_dict(
            {k: torch.from_numpy(v) for k, v in resume.algorithm.items()}, device
        )
    model, _ = accounting.broadcast_model(world, model, None, device)
    return model


def local_mask_record(model, algorithm, local_mask, config):
    """The client's local mask per prunable tensor, when the run records client masks."""
    if local_mask is None or not config.output.record_client_masks:
        return None
    return tensor_masks(model, algorithm.prunable, local_mask)


def tensor_masks(model, prunable: torch.Tensor, mask: torch.Tensor) -> dict[str, np.ndarray]:
    """Split a flat bool mask into the prunable tensors' masks (host numpy, tensor shapes)."""
    host_mask = mask.cpu().numpy()
    host_prunable = prunable.cpu().numpy()
    out = {}
    for info in model.layout:
        if host_prunable[info.offset : info.offset + info.numel].any():
            out[info.name] = host_mask[info.offset : info.offset + info.numel].reshape(info.shape)
    return out


def evaluate_local(config, setup, model, x_train, y_train, world):
    """Mean accuracy over clients' local test splits (FedDIP's non-IID metric), if asked."""
    if not config.federation.eval_local or setup.test_parts is None:
        return None
    values = []
    for part in setup.test_parts:
        if len(part):
            s = evaluate(
                model,
                x_train,
                y_train,
                task=setup.dataset.task,
                batch_size=config.federation.eval_batch_size,
                world=world,
                indices=part,
            )
            values.append(s.get("accuracy", s.get("mae")))
    return float(np.mean(values)) if values else None


def round_metrics(rnd, rows, scores, local_acc, current, setup, config, task, mpi_bytes, wall_s):
    """One row of /metrics from the gathered client records (sorted by client id)."""
    samples = np.array([r.samples for r in rows], dtype=np.float64)
    losses = np.array([r.loss for r in rows], dtype=np.float64)
    numel = setup.model.numel
    sparsity = accounting.sparsity(current, setup.algorithm.prunable)
    down = accounting.download_info(current, config.comm.value_dtype).total_bytes * len(rows)
    metrics = {
        "round": rnd,
        ("test_accuracy" if task == "classification" else "test_mae"): scores.get(
            "accuracy", scores.get("mae", float("nan"))
        ),
        "test_loss": scores.get("loss", float("nan")),
        "train_loss": float((samples * losses).sum() / samples.sum()),
        "sparsity": sparsity,
        "density": 1.0 - sparsity,
        "bytes_up": float(sum(r.bytes_up for r in rows)),
        "bytes_down": float(down),
        "bytes_up_dense_equiv": float(4 * numel * len(rows)),
        "bytes_up_values_only": float(sum(r.value_bytes for r in rows)),
        "mpi_bytes": float(mpi_bytes),
        "clients": len(rows),
        "wall_s": wall_s,
    }
    if config.federation.eval_local:
        metrics["local_test_accuracy"] = float("nan") if local_acc is None else local_acc
    return metrics


def create_outputs(config, world, setup, runfile, out_dir, devices):
    """Rank 0: the run directory, config.yaml and the new run file."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.yaml").write_text(to_yaml(config))
    (out_dir / "metrics.jsonl").write_text("")
    ds = setup.dataset
    runfile.create(
        attrs={
            "config": to_yaml(config),
            "seed": config.runtime.seed,
            "world_size": world.size,
            "algorithm": setup.algorithm.name,
            "dataset": ds.name,
            "model": config.model.name,
            "task": ds.task,
            "num_clients": config.partition.num_clients,
            "rounds_planned": config.federation.rounds,
            "device": setup.device,
            "devices": json.dumps(devices),
        },
        layout=setup.model.layout,
        prunable=setup.algorithm.prunable.cpu().numpy(),
        partition={k: np.asarray(v) for k, v in setup.stats.items()},
    )


def write_round(
    runfile, out_dir, rnd, metrics, rows, current, setup, algorithm, config, mask_changed
):
    """Rank 0: append the round to run.h5 and metrics.jsonl (the mask only when it changed)."""
    mask_record = None
    if algorithm.prunes and config.output.record_masks and mask_changed:
        mask_record = (rnd, tensor_masks(setup.model, algorithm.prunable, current.mask))
    uplink = (
        np.full(len(rows), rnd),
        np.array([r.client for r in rows]),
        np.array([r.bytes_up for r in rows]),
    )
    client_masks = [(rnd, r.client, r.mask) for r in rows if r.mask is not None]
    runfile.append_round(metrics, mask_record=mask_record, uplink=uplink, client_masks=client_masks)
    with open(out_dir / "metrics.jsonl", "a") as fh:
        fh.write(
            json.dumps(
                {
                    k: (None if isinstance(v, float) and np.isnan(v) else v)
                    for k, v in metrics.items()
                }
            )
            + "\n"
        )


def human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return f"{n:.1f} TB"


def progress_line(rnd, done, rounds, m, metric_name, elapsed):
    """One line per round on rank 0: round, score, loss, bytes, speed, ETA.

    ``done`` counts the rounds run by this process (fewer than ``rnd`` after a resume).
    """
    score = m[metric_name]
    label = "acc" if metric_name == "test_accuracy" else "mae"
    score_text = "  -   " if np.isnan(score) else f"{score:.4f}"
    per_round = elapsed / done
    eta = per_round * (rounds - rnd)
    return (
        f"round {rnd}/{rounds}  {label} {score_text}  train_loss {m['train_loss']:.4f}  "
        f"sparsity {m['sparsity']:.3f}  up {human_bytes(m['bytes_up'])}  "
        f"down {human_bytes(m['bytes_down'])}  {m['wall_s']:.2f} s/round  ETA {eta:.0f} s"
    )
