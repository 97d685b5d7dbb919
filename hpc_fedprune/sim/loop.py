"""The round loop: one narrated loop for every method and every world size.

before round 1: run directory, exploration (AutoFLIP: stoppable, saved), initial mask
                (SNIP, PruneFL, random), broadcast
cohort   = sample(seed, round)                    same on every rank
units    = schedule(cohort, rank)                 balanced by client size (whole groups
                                                  when training.group_size > 1)
fetch client state of the rank's clients          only methods with client state
for each unit, for each client c:                 one model object, loaded in place
    plan = algorithm.plan_client(c)               masks, penalty, gradient, grouping
    train c from the global model as planned      alone, or with its group
    update = algorithm.finish_client(c)           what c sends, its sums, its new state
    rank_sums += p_c * update.channels            int64 fixed point, order-free
send new client state home                        (Top-k residuals)
sums = reduce(rank_sums) to rank 0                one collective per round
rank 0: global = algorithm.server_step(sums)      server update, server pruning
broadcast global weights and mask                 every rank holds the same bits
evaluate every k rounds, membership attacks at privacy.rounds
rank 0 writes the round to run.h5 and metrics.jsonl
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from ..algorithms.base import GlobalModel, RoundContext, ServerState
from ..client_state.homes import ClientStates
from ..comm.wire import round_to_wire_
from ..comm.world import World
from ..config import Config
from ..exchange import accounting
from ..exchange.accumulate import ExactAccumulator
from ..exploration.phase import include_cost
from ..exploration.resumable import explore
from ..faults import maybe_fail
from ..privacy import PrivacyEvaluator
from ..store.checkpoint import Checkpoint
from ..store.rundir import RunDir
from ..store.tensorboard import log_round
from ..training.clients import ClientTrainer
from ..training.evaluate import evaluate, score_names
from ..training.gradients import client_gradient, initial_trainer
from ..training.local import LocalTrainer
from .cohort import rank_units, sample_cohort
from .progress import RoundProgress
from .setup import Setup, to_device
from .signals import StopFlag
from .targets import warn_unreached_target


@dataclass
class ClientRecord:
    """What rank 0 learns about one client of a round (gathered from every rank)."""

    client: int
    loss: float  # mean training loss over the client's local steps
    samples: int
    bytes_up: int  # encoded uplink
    value_bytes: int  # the values alone
    mask: dict[str, np.ndarray] | None  # client-local mask per tensor, when recorded
    metrics: dict[str, float] = field(default_factory=dict)  # the method's per-client numbers


@dataclass
class RunResult:
    """What a run reports to the command line (meaningful on rank 0)."""

    out_dir: Path
    rounds: int
    metrics: dict[str, float]
    stopped: bool = False  # a stop signal ended the run early (checkpoint written)


@dataclass
class Engine:
    """The pieces every round uses on a rank: trainers, client state, data, attacks."""

    setup: Setup
    trainer: LocalTrainer
    clients: ClientTrainer
    states: ClientStates
    privacy: PrivacyEvaluator | None
    x_test: torch.Tensor
    y_test: torch.Tensor
    progress: RoundProgress | None = None  # rank 0's lines inside a long round


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

    ``resume`` (rank 0's checkpoint; None elsewhere) continues after its round. ``stop``
    is polled after every round (and every exploration step).
    """
    fed, algorithm = config.federation, setup.algorithm
    warn_unreached_target(algorithm, fed.rounds, world.is_root)  # a shortened run
    engine = build_engine(config, world, setup)
    rundir = RunDir(out_dir) if world.is_root else None
    # The global model before round 1 (or after the checkpoint's round), on every rank;
    # the server's state on rank 0.
    current, server, first = start_model(config, world, engine, rundir, resume, stop)
    if current is None:  # a stop signal ended the exploration phase (its state is saved)
        engine.states.close()
        return RunResult(out_dir, 0, {}, stopped=True)
    # After the exploration phase: the rounds' ETA counts the rounds' time only.
    start_time = time.perf_counter()
    last: dict[str, float] = {}
    for rnd in range(first, fed.rounds + 1):
        t_round = time.perf_counter()
        cohort = sample_cohort(config.runtime.seed, rnd, config.partition.num_clients,
                               setup.cohort_size)  # fmt: skip
        ctx = round_context(config, setup, rnd, cohort)
        # What the cohort downloads at the start of the round: the global model as it is.
        bytes_down = download_bytes(current, config.comm.value_dtype) * ctx.cohort_size
        units = rank_units(cohort, setup.sizes, world.size, world.rank, engine.clients.unit_size)
        # Clients train from the global model and add their weighted uploads to the sums.
        engine.progress = RoundProgress(rnd, fed.rounds, sum(map(len, units)),
                                        world.is_root and config.output.progress)  # fmt: skip
        sums, records = train_clients(config, world, engine, ctx, current, units)
        maybe_fail("reduce", world.rank, rnd)
        # One reduction of every rank's sums to rank 0, which takes the server step.
        shared = sums.tile(current.mask) if algorithm.channels_within_mask else None
        total, reduce_bytes = accounting.reduce_to_root(
            world, sums.packed(), config.comm.reduce, shared
        )
        previous_mask, method_metrics = current.mask, {}
        if world.is_root:
            result = algorithm.server_step(
                ctx=ctx, sums=sums.unpack(total, setup.device), model=current, server=server
            )
            current, method_metrics = result.model, result.metrics
            round_to_wire_(current.weights)  # zeros travel as +0.0: rank 0 holds those bits
        # Every rank receives the new global model.
        current, bcast_bytes = accounting.broadcast_model(world, current, previous_mask,
                                                          setup.device)  # fmt: skip
        gathered = world.gather_objects((records, reduce_bytes + bcast_bytes))
        scores, local_acc, attacked, attack_s = evaluate_round(config, world, engine, current, rnd)
        t_round += attack_s  # the round's wall_s leaves membership attacks out
        if world.is_root:
            last = record_round(
                config, setup, rundir, rnd, gathered, scores, local_acc, current,
                previous_mask, method_metrics, attacked, bytes_down,
                time.perf_counter() - t_round,
            )  # fmt: skip
            report_progress(config, rnd, first, last, setup.dataset.task, start_time)
        # Every rank learns whether any was signalled, so all stop after the same round.
        stopping = world.any_flag(stop is not None and stop.raised) and rnd < fed.rounds
        every = config.output.checkpoint_every
        if stopping or (every and rnd % every == 0 and rnd < fed.rounds):
            with engine.states.to_root() as client_state:  # collective: chunks to rank 0
                if world.is_root:
                    rundir.write_checkpoint(snapshot(rnd, current, server, client_state))
        if stopping:
            if world.is_root:
                rundir.mark("interrupted")
                print(
                    f"stopped by signal after round {rnd}; checkpoint written, resume with: "
                    f"python -m hpc_fedprune run --resume {out_dir}",
                    flush=True,
                )
            engine.states.close()
            return RunResult(out_dir, rnd, last, stopped=True)
    if world.is_root:
        rundir.finish(
            current.weights.cpu().numpy(),
            None if current.mask is None else current.mask.cpu().numpy(),
            wall_s=time.perf_counter() - start_time,
        )
    engine.states.close()
    return RunResult(out_dir, fed.rounds, last)


def build_engine(config: Config, world: World, setup: Setup) -> Engine:
    """The rank's trainers, client-state homes and data on its device."""
    ds, device = setup.dataset, setup.device
    x_train, y_train = to_device(ds.x_train, device), to_device(ds.y_train, device)
    trainer = LocalTrainer(setup.model, config, ds.task, x_train, y_train)
    # One client at a time, or groups of clients in one batched step (training.group_size).
    clients = ClientTrainer(trainer, config, setup.train_parts, announce=world.is_root)
    return Engine(
        setup=setup,
        trainer=trainer,
        clients=clients,
        states=ClientStates.for_run(config, world, setup.algorithm),  # home ranks
        privacy=PrivacyEvaluator.from_setup(config, setup, x_train, y_train),
        x_test=to_device(ds.x_test, device),
        y_test=to_device(ds.y_test, device),
    )


def start_model(config, world, engine, rundir, resume, stop=None):
    """The global model every rank starts from, rank 0's server state and the first round.

    A new run writes the run directory, explores (AutoFLIP) and draws the initial mask
    from rank 0's view; a resumed run takes both from the checkpoint instead. Returns
    ``(None, None, 0)`` when a stop signal ended the exploration phase.
    """
    setup, algorithm = engine.setup, engine.setup.algorithm
    trainer, device = engine.trainer, setup.device
    weights = setup.model.flat.detach().clone()

    def gradient(client, rng):  # for masks scored at initialisation (SNIP, PruneFL)
        return trainer.first_batch_gradient(weights, setup.train_parts[client], rng)

    devices = world.gather_objects(f"{socket.gethostname()}:{device}")
    resumed_round = world.bcast_object(None if resume is None else resume.round)
    if resumed_round is None and world.is_root:
        # Before the exploration phase: a stop or a time limit there keeps the directory.
        rundir.create(config, setup, world.size, devices)
    # AutoFLIP's exploration phase scores the initial mask (not on resume: the checkpoint
    # holds the mask).
    exploration = None
    if algorithm.explores and resumed_round is None:
        exploration = explore(config, world, setup, trainer, weights, rundir, stop)
        if exploration.stopped:
            return None, None, 0
    train = initial_trainer(trainer, setup.train_parts, config)  # PruneFL's initial pruning
    mask = algorithm.initial_mask(
        weights=weights, gradient=gradient, train=train, exploration=exploration
    )
    current = GlobalModel(weights, mask)
    if current.mask is not None:
        current.weights.mul_(current.mask)
    # A mask scored from a gradient could differ in its last bits between devices: rank 0's wins.
    current, _ = accounting.broadcast_model(world, current, None, device)
    server: ServerState | None = None
    if world.is_root:
        server = algorithm.new_server(
            weights=current.weights, mask=current.mask, exploration=exploration
        )
    if resumed_round is not None:
        current = restore_state(world, resume, server, device)
        engine.states.restore(resume)  # rank 0 reads, home ranks receive (collective)
        return current, server, resumed_round + 1
    return current, server, 1


def download_bytes(model: GlobalModel, value_dtype: str) -> int:
    """Encoded bytes of one client's download of ``model`` (`accounting.download_info`)."""
    return accounting.download_info(model, value_dtype).total_bytes


def round_context(config: Config, setup: Setup, rnd: int, cohort: np.ndarray) -> RoundContext:
    """The read-only facts of round ``rnd`` with this ``cohort`` (the same on every rank)."""
    return RoundContext(
        round=rnd,
        rounds=config.federation.rounds,
        seed=config.runtime.seed,
        lr=config.training.lr * config.training.lr_decay ** (rnd - 1),
        cohort_samples=int(setup.sizes[cohort].sum()),
        cohort_size=len(cohort),
        weighting=config.federation.weighting,
    )


def train_clients(config, world, engine, ctx, current, units):
    """Train this rank's clients of the round; returns the rank's exact sums and records.

    Each client is planned, trained (alone or with its group), finished, and its channels
    added to the sums with its sample weight; its new persistent state goes home after.
    """
    setup, algorithm = engine.setup, engine.setup.algorithm
    value_dtype = config.comm.value_dtype
    sums = ExactAccumulator.for_channels(
        algorithm.round_channels(ctx), setup.model.numel, ctx.cohort_size, setup.device
    )
    engine.states.fetch(np.concatenate(units) if units else np.zeros(0, np.int64))
    records = []
    for unit in units:
        held = {int(c): engine.states.take(int(c)) for c in unit}
        plans = {
            c: algorithm.plan_client(ctx=ctx, model=current, client=c, state=held[c]) for c in held
        }
        trained = engine.clients.train(
            unit=unit, plans=plans, round_index=ctx.round, start=current.weights, lr=ctx.lr
        )
        for client, result in trained:
            maybe_fail("train", world.rank, ctx.round)
            if result.train_mask is not None:  # a readjustment changed the client's mask
                plans[client] = replace(plans[client], train_mask=result.train_mask)
            local = setup.model.flat
            grad = None
            if plans[client].needs_gradient:
                parts = setup.train_parts[client]
                grad = client_gradient(engine.trainer, local, parts, ctx.seed, ctx.round, client)
            if algorithm.sends_weights:
                round_to_wire_(local, value_dtype)  # what travels: the wire's precision
            update = algorithm.finish_client(
                ctx=ctx, model=current, client=client, plan=plans[client], local=local,
                gradient=grad, state=held[client],
            )  # fmt: skip
            weight = ctx.client_weight(result.samples)  # p_c (federation.weighting)
            sums.add_client(update.channels, algorithm.channels, weight)
            engine.states.keep(client, update.state)
            if engine.progress is not None:
                engine.progress.client_done()
            wire = accounting.upload_info(update, value_dtype)
            mask = None
            if update.client_mask is not None and config.output.record_client_masks:
                mask = tensor_masks(setup.model, algorithm.prunable, update.client_mask)
            records.append(
                ClientRecord(client, result.loss, result.samples, wire.total_bytes,
                             wire.value_bytes, mask, dict(update.metrics))
            )  # fmt: skip
    world.quiet_barrier()  # ranks done training sleep here, not spin in MPI (runtime.wait)
    engine.states.send_back()  # new states to their home ranks (collective)
    return sums, records


def evaluate_round(config, world, engine, current, rnd):
    """Scores of the global model (every ``eval_every`` rounds) and membership attacks.

    Collective. Returns the test scores, the mean local-split accuracy, rank 0's attack
    rows and the seconds the attacks took.
    """
    fed, setup = config.federation, engine.setup
    model = setup.model
    scores, local_acc = {}, None
    if rnd % fed.eval_every == 0 or rnd == fed.rounds:
        model.load_(current.weights)
        scores = evaluate(
            model, engine.x_test, engine.y_test, task=setup.dataset.task,
            batch_size=fed.eval_batch_size, world=world,
        )  # fmt: skip
        local_acc = evaluate_local(config, setup, model, engine.trainer.x, engine.trainer.y, world)
    attacked, attack_s = None, 0.0
    if engine.privacy is not None and engine.privacy.due(rnd):
        t_attack = time.perf_counter()
        attacked = engine.privacy.evaluate(model, current.weights, rnd, world)
        attack_s = time.perf_counter() - t_attack
    return scores, local_acc, attacked, attack_s


def record_round(
    config, setup, rundir, rnd, gathered, scores, local_acc, current, previous_mask,
    method_metrics, attacked, bytes_down, wall_s,
):  # fmt: skip
    """Rank 0: the round's metrics row, written with its records; returns the row."""
    rows = sorted((r for part, _ in gathered for r in part), key=lambda r: r.client)
    mpi_bytes = sum(b for _, b in gathered)
    last = round_metrics(rnd, rows, scores, local_acc, current, setup, config,
                         setup.dataset.task, mpi_bytes, bytes_down, wall_s)  # fmt: skip
    last.update(method_metrics)
    include_cost(last)  # exploration traffic counts in round 1's bytes
    maybe_fail("write", 0, rnd)
    # Round 1 records a mask fixed before it (initial_mask) as well.
    mask_changed = current.mask is not None and (
        rnd == 1 or previous_mask is None or not torch.equal(previous_mask, current.mask)
    )
    algorithm = setup.algorithm
    mask_record = None
    if algorithm.prunes and config.output.record_masks and mask_changed:
        mask_record = tensor_masks(setup.model, algorithm.prunable, current.mask)
    layers = setup.cost.layer_rows(current.mask)
    rundir.append_round(last, rows, mask=mask_record, layers=layers, privacy=attacked or ())
    if config.output.tensorboard:
        log_round(rundir.path, rnd, last)
    return last


def report_progress(config, rnd, first, last, task, start_time) -> None:
    """Rank 0: one progress line per round (``output.progress``)."""
    if config.output.progress:
        metric_name = "test_accuracy" if task == "classification" else "test_mae"
        elapsed = time.perf_counter() - start_time
        line = progress_line(rnd, rnd - first + 1, config.federation.rounds, last, metric_name,
                             elapsed)  # fmt: skip
        print(line, flush=True)


def snapshot(rnd: int, current: GlobalModel, server: ServerState, clients=None) -> Checkpoint:
    """Rank 0: the state a resumed run needs after round ``rnd`` (``clients``: client state)."""
    state = {k: (None if v is None else v.cpu().numpy()) for k, v in server.state_dict().items()}
    mask = None if current.mask is None else current.mask.cpu().numpy()
    return Checkpoint(rnd, current.weights.cpu().numpy(), mask, state, clients)


def restore_state(world: World, resume: Checkpoint | None, server, device) -> GlobalModel:
    """Global model to every rank, server state to rank 0, from rank 0's checkpoint."""
    model = None
    if world.is_root:
        mask = None if resume.mask is None else torch.from_numpy(resume.mask).to(device)
        model = GlobalModel(torch.from_numpy(resume.weights).to(device), mask)
        server.load_state_dict(
            {k: torch.from_numpy(v) for k, v in resume.algorithm.items()}, device
        )
    model, _ = accounting.broadcast_model(world, model, None, device)
    return model


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


def round_metrics(
    rnd, rows, scores, local_acc, current, setup, config, task, mpi_bytes, bytes_down, wall_s
):
    """One row of /metrics from the gathered client records (sorted by client id)."""
    samples = np.array([r.samples for r in rows], dtype=np.float64)
    losses = np.array([r.loss for r in rows], dtype=np.float64)
    numel = setup.model.numel
    sparsity = accounting.sparsity(current, setup.algorithm.prunable)
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
        "bytes_down": float(bytes_down),
        "bytes_up_dense_equiv": float(4 * numel * len(rows)),
        "bytes_up_values_only": float(sum(r.value_bytes for r in rows)),
        "mpi_bytes": float(mpi_bytes),
        "clients": len(rows),
        "wall_s": wall_s,
    }
    if config.federation.eval_local:
        metrics["local_test_accuracy"] = float("nan") if local_acc is None else local_acc
    for name in score_names(task, setup.dataset.num_classes):
        metrics[f"test_{name}"] = scores.get(name, float("nan"))
    metrics.update(setup.cost.round_metrics(current.mask))
    metrics.update(client_metric_means(rows))
    return metrics


def client_metric_means(rows: list[ClientRecord]) -> dict[str, float]:
    """Sample-weighted means of the methods' per-client numbers, in client order."""
    names = sorted({name for r in rows for name in r.metrics})
    out = {}
    for name in names:
        pairs = [(r.samples, r.metrics[name]) for r in rows if name in r.metrics]
        total = sum(n for n, _ in pairs)
        out[name] = float(sum(n * v for n, v in pairs) / total) if total else float("nan")
    return out


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
