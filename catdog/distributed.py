"""Data-parallel training across processes: process group, rank helpers, collectives, launcher.

torchrun (or `catdog train --nproc N`) starts one process per device and tells each its place
in the environment: RANK (0..WORLD_SIZE-1 over all nodes), LOCAL_RANK (its index on this node)
and WORLD_SIZE. Without WORLD_SIZE there is no process group: every helper here then does what
one process would (`rank()` is 0, `sum_across` returns its input, `barrier` returns at once),
so single-process training runs exactly the code it always ran.

On CUDA each process takes the GPU `cuda:LOCAL_RANK` and talks over NCCL; on the CPU over gloo.
"""

import os
import pickle
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from catdog.devices import resolve_device
from catdog.errors import ConfigError

T = TypeVar("T")
E = TypeVar("E", bound=BaseException)


# --- where this process stands ---------------------------------------------------------------


def launched() -> bool:
    """Whether torchrun (or a launcher like it) started this process: WORLD_SIZE is set."""
    return "WORLD_SIZE" in os.environ


def active() -> bool:
    """Whether a process group is up, so collectives reach the other processes."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """Rank 0 writes the run's files and talks to the user; the others stay quiet."""
    return rank() == 0


def device() -> torch.device:
    """This process's device inside a process group: its GPU under NCCL, else the CPU."""
    if active() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def rank_device(name: str, local_rank: int) -> torch.device:
    """The device of the process `local_rank` on its node, for the config's `device: name`."""
    try:
        return resolve_device(name, local_rank)
    except ConfigError as error:
        # Every rank meets the same config; a missing GPU of one rank's own is its alone.
        raise (error if str(error).startswith("LOCAL_RANK") else everywhere(error)) from None


@contextmanager
def process_group(device_name: str) -> Iterator[None]:
    """Join the process group torchrun describes in the environment, and leave it afterwards.

    Does nothing when WORLD_SIZE is unset (one process, no group). The backend follows the
    device: NCCL when this process trains on its GPU, gloo on the CPU.
    """
    if not launched():
        yield
        return
    try:
        global_rank = int(os.environ["RANK"])
        local_rank = int(os.environ["LOCAL_RANK"])
        size = int(os.environ["WORLD_SIZE"])
    except (KeyError, ValueError):
        raise everywhere(
            ConfigError(
                "WORLD_SIZE is set, but RANK and LOCAL_RANK are not both whole numbers: start "
                "catdog with torchrun or --nproc, or unset WORLD_SIZE"
            )
        ) from None
    here = rank_device(device_name, local_rank)
    if here.type == "cuda":
        torch.cuda.set_device(here)
        dist.init_process_group("nccl", rank=global_rank, world_size=size, device_id=here)
    else:
        dist.init_process_group("gloo", rank=global_rank, world_size=size)
    try:
        yield
    finally:
        dist.destroy_process_group()


def wrap(model: nn.Module) -> nn.Module:
    """`model` in DistributedDataParallel, which averages gradients over the ranks in backward.

    With several GPUs, batch norm becomes SyncBatchNorm so its statistics are the global
    batch's (the same Parameter objects are kept, so an optimizer built on them still works).
    """
    here = device()
    if here.type == "cuda" and world_size() > 1:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return DistributedDataParallel(model, device_ids=[here.index] if here.type == "cuda" else None)


# --- errors that every rank raises -----------------------------------------------------------


def everywhere(error: E) -> E:
    """Mark `error` as one that every rank raises together, so that only rank 0 reports it.

    The command line reads the mark (`on_every_rank`); an error that one rank alone meets,
    such as a photo folder missing on one node, stays unmarked and is reported where it arose.
    """
    error.on_every_rank = True  # type: ignore[attr-defined]
    return error


# --- collectives (each returns at once without a process group) ------------------------------


def barrier() -> None:
    if active():
        dist.barrier()


def sum_across(values: Sequence[float]) -> list[float]:
    """Element-wise sums over all ranks (in float64), the same list on every rank."""
    if not active():
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=device())
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.tolist()


def max_across(value: int) -> int:
    """The largest `value` over all ranks."""
    if not active():
        return value
    tensor = torch.tensor([value], dtype=torch.int64, device=device())
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return int(tensor.item())


def all_gather(value: T) -> list[T]:
    """Every rank's `value` (any picklable object), in rank order, on every rank."""
    if not active():
        return [value]
    gathered: list[Any] = [None] * world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def on_main(make: Callable[[], T]) -> T:
    """Rank 0 calls `make`; every rank gets its result, or raises the error rank 0 raised.

    Used for what must exist once, such as a new run folder whose path all ranks then share.
    """
    if not active():
        return make()
    result: Any = None
    error: BaseException | None = None
    if is_main():
        try:
            result = make()
        except BaseException as failure:
            error = failure
    shared = [result, None if error is None else _portable(error)]
    dist.broadcast_object_list(shared, src=0)
    if error is not None:
        raise error
    if shared[1] is not None:
        raise everywhere(shared[1])  # rank 0 reports its own
    return shared[0]


@contextmanager
def main_first() -> Iterator[None]:
    """Rank 0 runs the block; then the others run it (to read the cache rank 0 just wrote).

    When rank 0's block fails, the others don't run it: they raise rank 0's error.
    """
    if not active():
        yield
        return
    if is_main():
        try:
            yield
        except BaseException as error:
            dist.broadcast_object_list([_portable(error)], src=0)
            raise
        dist.broadcast_object_list([None], src=0)
        return
    failure: list[Any] = [None]
    dist.broadcast_object_list(failure, src=0)
    if failure[0] is not None:
        raise everywhere(failure[0])  # rank 0 reports its own
    yield


def _portable(error: BaseException) -> Exception:
    """`error` itself when it pickles (the others then fail the same way), else a summary."""
    if isinstance(error, Exception):
        try:
            pickle.loads(pickle.dumps(error))
            return error
        except Exception:
            pass
    return RuntimeError(f"rank 0 failed: {type(error).__name__}: {error}")


# --- launching -------------------------------------------------------------------------------


def launch(nproc: int, args: Sequence[str]) -> int:
    """Run `python -m catdog ARGS` in `nproc` processes on this machine; return the exit code.

    This is `torchrun --standalone --nproc_per_node NPROC -m catdog ARGS` (torch's own launcher,
    called in this process so that the workers' exit code survives: torchrun itself exits 1
    whatever they exited with). The code is the first failed worker's, 128 + N for a worker
    killed by signal N, or 128 + N when this launcher gets signal N (Ctrl-C: the workers get it
    too, finish their step and write a checkpoint).
    """
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    if launched():
        raise ConfigError(
            f"--nproc: this process was itself started by torchrun (WORLD_SIZE="
            f"{os.environ['WORLD_SIZE']}); leave out --nproc"
        )
    try:
        run(parse_args(["--standalone", f"--nproc-per-node={nproc}", "--module", "catdog", *args]))
    except ChildFailedError as error:
        return exit_code(error)
    except SignalException as error:
        return 128 + int(error.sigval)
    return 0


def exit_code(error: Any) -> int:
    """The exit code to report for torchrun's ChildFailedError: its first failure's."""
    _, failure = error.get_first_failure()
    code = int(failure.exitcode)
    return 128 - code if code < 0 else code or 1


# --- what data-parallel training can't do, and each rank's random stream -----------------------


def check_distributed(config: Any, world: int, here: torch.device) -> None:
    """Refuse, in one line, what data-parallel training can't do exactly as one process does."""
    from catdog.optim import OPTIMIZERS

    name = config.optimizer.name
    if not OPTIMIZERS[name].uses_gradients:
        raise everywhere(
            ConfigError(
                f"optimizer.name: {name!r} is gradient-free, so DistributedDataParallel has no "
                "gradients to average; train it in one process (without torchrun or --nproc)"
            )
        )
    if config.model.batch_norm and world > 1 and here.type != "cuda":
        raise everywhere(
            ConfigError(
                "model.batch_norm: over several processes the batch statistics need "
                "SyncBatchNorm, which torch runs on GPUs only; on the CPU train it in one "
                "process, or set model.batch_norm=false"
            )
        )


def rank_seed(*parts: int) -> int:
    """A seed for this rank's own random stream (dropout), mixed from `parts`."""
    import numpy as np

    state = np.random.SeedSequence([int(part) for part in parts]).generate_state(1, np.uint64)
    return int(state[0] >> 1)  # 63 bits: torch.manual_seed takes a signed 64-bit seed


def rng_state(here: torch.device) -> dict[str, Any]:
    """The random streams a checkpoint keeps: rank 0's, and under DDP every rank's (collective)."""
    state = {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(here) if here.type == "cuda" else None,
    }
    if world_size() > 1:
        ranks = all_gather(state)
        state = {**ranks[0], "ranks": ranks}
    return state


def restore_rng_state(saved: dict[str, Any], here: torch.device, *fresh_seed: int) -> None:
    """Continue the random stream a checkpoint left off at; under DDP each rank its own.

    A checkpoint from another number of processes has no stream for this rank: it starts a
    fresh one from `fresh_seed` (seed, epoch, step) and the rank.
    """
    if world_size() > 1:
        ranks = saved.get("ranks") or []
        if len(ranks) != world_size():
            torch.manual_seed(rank_seed(*fresh_seed[:1], rank(), *fresh_seed[1:]))
            return
        saved = ranks[rank()]
    torch.set_rng_state(saved["torch"])
    if here.type == "cuda" and saved.get("cuda") is not None:
        torch.cuda.set_rng_state(saved["cuda"], here)
