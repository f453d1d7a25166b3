"""Who am I in the job: rank, world size and device, from torchrun's environment (or none).

torchrun (``python -m torch.distributed.run``) sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and
the rendezvous variables; without them the run is one process (rank 0 of 1) and no process group
is created. With more than one process, each rank uses its own device (``cuda:LOCAL_RANK`` when
the device is CUDA) and joins a process group on NCCL (CUDA) or gloo (CPU). The group is used
twice: rank 0 hands every rank the list of unfinished work at the start, and one barrier waits for
all ranks at the end. Nothing is exchanged while images are explained (the model is not wrapped
in DistributedDataParallel: inference needs no gradient synchronisation).

Work is split in *units* (``batch_size`` consecutive items in id order). Unit boundaries depend on
the batch size only, never on the number of processes, so a batch holds the same images whatever
the world size and a restart with another process count computes bit-for-bit the same numbers.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import torch

from ...devices import resolve_device
from ...errors import ArgumentError, DeviceError

__all__ = ["Shard", "my_units", "setup"]


@dataclass
class Shard:
    """This process's place in the job."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    distributed: bool = False
    """True when a process group was created (world size > 1)."""

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (``obj`` of other ranks is ignored)."""
        if not self.distributed:
            return obj
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=0, device=self.device if self.device.type == "cuda" else None)
        return box[0]

    def barrier(self) -> None:
        if self.distributed:
            import torch.distributed as dist

            if self.device.type == "cuda":
                dist.barrier(device_ids=[self.device.index or 0])
            else:
                dist.barrier()

    def close(self) -> None:
        """Leave the process group (if any)."""
        if self.distributed:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
            self.distributed = False


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ArgumentError(f"environment variable {name}={value!r} is not an integer (set by torchrun)") from None


def setup(device: str = "auto", timeout_minutes: float = 360.0) -> Shard:
    """Read the launcher's environment, pick this rank's device and join the process group.

    ``device``: ``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` (``cuda:LOCAL_RANK``),
    ``cuda:N`` (only with one process per node) or ``mps``. ``timeout_minutes`` bounds the final
    barrier, where fast ranks wait for slow ones.
    """
    rank, world = _env_int("RANK", 0), _env_int("WORLD_SIZE", 1)
    local_rank = _env_int("LOCAL_RANK", 0)
    if not 0 <= rank < world:
        raise ArgumentError(f"RANK={rank} is outside WORLD_SIZE={world}; launch with torchrun")
    dev = resolve_device(device)
    if dev.type == "cuda":
        if device.startswith("cuda:"):
            if _env_int("LOCAL_WORLD_SIZE", 1) > 1:
                raise DeviceError(
                    f"--device {device} pins every process of this node to one GPU; pass --device cuda "
                    "(each process takes cuda:LOCAL_RANK) or run one process per node"
                )
        else:
            count = torch.cuda.device_count()
            if local_rank >= count:
                raise DeviceError(
                    f"LOCAL_RANK {local_rank} has no GPU: this node has {count}; start at most {count} "
                    "processes per node (--nproc-per-node) or pass --device cpu"
                )
            dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    shard = Shard(rank, world, local_rank, dev, False)
    if (
        rank == 0
        and _env_int("TORCHELASTIC_MAX_RESTARTS", 0) > 0
        and _env_int("TORCHELASTIC_RESTART_COUNT", 0) == 0
        and os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
    ):
        warnings.warn(
            "torchrun --max-restarts with its shared rendezvous store can hand a restarted process group the "
            "previous attempt's addresses, so the restart fails to connect (pytorch/pytorch#135712, seen with "
            "torch 2.14); launch torchrun with TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 in its environment",
            stacklevel=2,
        )
    if world > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            backend = "nccl" if dev.type == "cuda" else "gloo"
            kwargs: dict[str, Any] = {"backend": backend, "timeout": timedelta(minutes=timeout_minutes)}
            if dev.type == "cuda":
                kwargs["device_id"] = dev
            dist.init_process_group(**kwargs)
        shard.distributed = True
    return shard


def my_units(pending: Sequence[int], shard: Shard) -> list[int]:
    """This rank's share of the unfinished units: every ``world``-th one, starting at ``rank``.

    ``pending`` is the same sorted list on every rank (rank 0's, broadcast), so the shares are
    disjoint and together cover it.
    """
    return [u for k, u in enumerate(pending) if k % shard.world == shard.rank]
