"""Running on several processes (``torchrun``) and devices: the pieces training needs.

``torchrun`` (or any launcher following its convention) tells each process who it is
through the environment: ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``
and ``MASTER_ADDR``/``MASTER_PORT``. Without them a process is a world of one and
nothing here talks to other processes.
"""

from __future__ import annotations

import contextlib
import inspect
import os
from dataclasses import dataclass
from typing import Iterator, Mapping, Sequence

import torch
import torch.distributed as dist
from torch import nn

from ..errors import ConfigError


@dataclass(frozen=True)
class Cluster:
    """Where this process stands among those training together."""

    rank: int = 0  # among all processes, from 0
    world_size: int = 1
    local_rank: int = 0  # among the processes of this machine
    local_world_size: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes files and reports progress."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def cpu_threads(self) -> int:
        """This process's share of the machine's cores."""
        return max(1, (os.cpu_count() or 1) // self.local_world_size)


def detect_cluster(env: Mapping[str, str] = os.environ) -> Cluster:
    """The :class:`Cluster` described by torchrun's environment variables."""
    try:
        world = int(env.get("WORLD_SIZE", "1"))
        rank = int(env.get("RANK", "0"))
        local_rank = int(env.get("LOCAL_RANK", str(rank)))
        local_world = int(env.get("LOCAL_WORLD_SIZE", str(world)))
    except ValueError as e:
        raise ConfigError(f"bad distributed environment variable ({e}); launch with torchrun "
                          "or unset RANK/WORLD_SIZE/LOCAL_RANK") from None
    if not 0 <= rank < world or not 0 <= local_rank < local_world:
        raise ConfigError(f"RANK={rank} / LOCAL_RANK={local_rank} do not fit WORLD_SIZE="
                          f"{world} / LOCAL_WORLD_SIZE={local_world}")
    return Cluster(rank, world, local_rank, local_world)


def select_device(cluster: Cluster) -> torch.device:
    """The GPU numbered ``LOCAL_RANK`` when CUDA is available, else the CPU.
    (Hide GPUs with ``CUDA_VISIBLE_DEVICES=`` to train on the CPU.)"""
    if not torch.cuda.is_available():
        return torch.device("cpu")
    if cluster.local_rank >= torch.cuda.device_count():
        raise ConfigError(f"LOCAL_RANK {cluster.local_rank} but only "
                          f"{torch.cuda.device_count()} GPU(s) here; start at most that "
                          "many processes per machine (--nproc-per-node)")
    torch.cuda.set_device(cluster.local_rank)
    return torch.device("cuda", cluster.local_rank)


def check_precision(precision: str, device: torch.device) -> None:
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError("train.precision=fp16 needs a CUDA GPU (CPUs have no fast fp16 "
                          "arithmetic); use train.precision=bf16 or fp32 on the CPU")
    if precision == "bf16" and device.type == "cpu" and not cpu_has_bf16():
        raise ConfigError("train.precision=bf16 needs a CPU with bfloat16 instructions "
                          "(avx512_bf16 or AMX); this one has none, so bf16 products are "
                          "emulated (tens of times slower than fp32) and the LSTM cannot "
                          "run in bf16 at all; use train.precision=fp32 here")


def cpu_has_bf16() -> bool:
    """Whether oneDNN has native bfloat16 kernels on this CPU. Without them the CPU
    LSTM under bf16 autocast fails with "could not create a primitive descriptor"."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def autocast(precision: str, device: torch.device):
    """Mixed precision for the network (a no-op for fp32). The CTC loss is computed
    outside it, in fp32: its log-sum-exp over long alignments underflows in 16 bits."""
    dtype = torch.float16 if precision == "fp16" else torch.bfloat16
    return torch.autocast(device.type, dtype=dtype, enabled=precision != "fp32")


def grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler:
    """Loss scaling, which fp16 gradients need not to underflow; disabled (a plain
    pass-through to the optimiser) otherwise."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")


@contextlib.contextmanager
def process_group(cluster: Cluster, device: torch.device) -> Iterator[None]:
    """Join the other processes for the duration (NCCL between GPUs, gloo between
    CPUs); leave again, all together, only if this call joined."""
    if not cluster.distributed or dist.is_initialized():
        yield
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, rank=cluster.rank, world_size=cluster.world_size,
                            device_id=device if device.type == "cuda" else None)
    try:
        yield
    except BaseException:
        dist.destroy_process_group()
        raise
    # Leave together: a process that tears its group down while another still talks to
    # it (rank 0 writes the last files) can abort in gloo's threads ("terminate called
    # without an active exception").
    dist.barrier()
    dist.destroy_process_group()


def data_parallel(module: nn.Module, cluster: Cluster, device: torch.device) -> nn.Module:
    """``module`` wrapped so that backward averages gradients over all processes (and its
    weights and buffers start as rank 0's); ``module`` itself on one process."""
    if not cluster.distributed:
        return module
    # Buffers (normalisation statistics) do not change while training: one broadcast
    # now, rather than one before every forward pass as DDP would do by default.
    for buffer in module.buffers():
        dist.broadcast(buffer.data, src=0)
    ddp = nn.parallel.DistributedDataParallel
    no_sync = "forward_sync_buffers" if "forward_sync_buffers" in \
        inspect.signature(ddp.__init__).parameters else "broadcast_buffers"  # older torch
    ids = [device.index] if device.type == "cuda" else None
    return ddp(module, device_ids=ids, **{no_sync: False})


def all_reduce_sum(values: Sequence[float], cluster: Cluster,
                   device: torch.device) -> list[float]:
    """Element-wise sums of ``values`` over all processes (float64)."""
    if not cluster.distributed:
        return list(values)
    t = torch.tensor(list(values), dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def merge_over_processes(items: dict, cluster: Cluster) -> dict:
    """The union of every process's ``items`` (rank 0's first, then rank 1's...): each
    process reads its own share of the data, so each finds its own unusable audio, and
    rank 0 alone reports and saves."""
    if not cluster.distributed:
        return dict(items)
    gathered: list = [None] * cluster.world_size
    dist.all_gather_object(gathered, dict(items))  # small: ids and reasons
    merged: dict = {}
    for part in gathered:
        merged.update(part)
    return merged
