"""torch DistributedDataParallel (gloo, 2 CPU processes) training our layer, and the same training in one
process on the full batch: ``python tests/dp_torch.py OUT.npz``. tests/test_distributed.py compares the
two with each other and with the NumPy oracle (tests/dp_common.py).

Each rank gets half of every batch; DDP all-reduces (averages) the gradients, so with ``mse_loss``'s mean
the update is the full batch's. The rendezvous uses a free localhost port picked here.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from dp_common import BATCH, CASES, LR, STEPS, batches, free_port, initial_weights, load, save
from torch.nn.parallel import DistributedDataParallel

import upsample
from upsample.backends import torch as ut

WORLD_SIZE = 2
# slice-pad-nearest has dead pixels on purpose; set at import, so the spawned ranks (which import this module) too
warnings.simplefilter("ignore", upsample.UpsampleWarning)


def nchw(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array.transpose(0, 3, 1, 2)))


def train(model: torch.nn.Module, x: np.ndarray, target: np.ndarray) -> None:
    """``STEPS`` SGD steps on ``mse_loss`` (mean over the batch given: the rank's shard under DDP)."""
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    for step in range(STEPS):
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(model(nchw(x[step])), nchw(target[step])).backward()
        optimizer.step()


def rank_main(rank: int, port: int, out: str) -> None:
    """One DDP process: trains every case on its shard; rank 0 writes the results."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD_SIZE)
    try:
        assert dist.get_world_size() == WORLD_SIZE
        shard = slice(rank * BATCH // WORLD_SIZE, (rank + 1) * BATCH // WORLD_SIZE)
        results = {}
        for name, (spec, size) in CASES.items():
            x, target = batches(spec, size)
            model = DistributedDataParallel(spec.build("torch", weights=initial_weights(spec)))
            train(model, x[:, shard], target[:, shard])
            results[f"{name}/parallel"] = ut.get_weights(model.module)
        if rank == 0:
            save(out, results)
        # both ranks past their last collective before either closes its gloo pairs: a rank that tears down
        # while its peer is still connected aborts now and then ("terminate called without an active
        # exception", 2 of 18 runs without this barrier on torch 2.13)
        dist.barrier()
    finally:
        dist.destroy_process_group()


def main(out: Path) -> None:
    parallel = out.with_suffix(".parallel.npz")
    mp.spawn(rank_main, args=(free_port(), str(parallel)), nprocs=WORLD_SIZE, join=True)
    results = load(str(parallel))
    for name, (spec, size) in CASES.items():
        model = spec.build("torch", weights=initial_weights(spec))
        train(model, *batches(spec, size))
        results[f"{name}/single"] = ut.get_weights(model)
    save(str(out), results)
    print(f"trained {len(CASES)} cases with DDP over {WORLD_SIZE} processes and in one process")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
