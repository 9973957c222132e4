"""torch DistributedDataParallel (gloo, 2 CPU processes) training our torch heads in training mode:
``python tests/dp_heads_torch.py OUT.npz``; tests/test_distributed_heads.py compares the result with the
NumPy oracles of tests/dp_heads_common.py.

Each rank gets half of every batch and its loss is ``WORLD_SIZE * sum(y * grad_y)`` on it, so DDP's averaged
gradient is the sum of the shards' gradients. ``nn.BatchNorm2d`` normalises each shard with the shard's own
statistics, and DDP (``broadcast_buffers=True``, the default) copies rank 0's running statistics to every rank
before each forward pass. Rank 0 writes what it holds after training.
"""

from __future__ import annotations

import sys

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from dp_common import free_port
from dp_heads_common import BATCH, HEADS, LR, batches, initial_weights, save
from torch.nn.parallel import DistributedDataParallel

from upsample.backends.torch import head as heads

WORLD_SIZE = 2


def nchw(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array.transpose(0, 3, 1, 2)))


def rank_main(rank: int, port: int, out: str) -> None:
    """One DDP process: trains every head on its shards; rank 0 writes its weights and running statistics."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD_SIZE)
    try:
        shard = slice(rank * BATCH // WORLD_SIZE, (rank + 1) * BATCH // WORLD_SIZE)
        results = {}
        for name, spec in HEADS.items():
            head = spec.build("torch", weights=initial_weights(spec))
            model = DistributedDataParallel(head.train())
            optimizer = torch.optim.SGD(model.parameters(), lr=LR)
            for x, grad_y in batches(spec):
                optimizer.zero_grad()
                (WORLD_SIZE * (model(nchw(x[shard])) * nchw(grad_y[shard])).sum()).backward()
                optimizer.step()
            results[f"{name}/ddp"] = heads.get_weights(head)
        if rank == 0:
            save(out, results)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    mp.spawn(rank_main, args=(free_port(), sys.argv[1]), nprocs=WORLD_SIZE, join=True)
    print(f"trained {len(HEADS)} heads with DDP over {WORLD_SIZE} processes")
