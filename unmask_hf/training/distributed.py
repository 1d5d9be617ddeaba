"""Several training processes: how many the launcher started, and checks that they really form one job.

`accelerate launch` starts N CPU processes only through its torchrun launcher (a config with
`distributed_type: MULTI_GPU` and `use_cpu: true`); its `MULTI_CPU` type and `--cpu --num_processes N` start a
single process unless mpirun is set up. These checks make such a mismatch an error instead of a silent 1-process run.
"""

import hashlib
import os

import torch
from accelerate import Accelerator

# Set by torchrun (WORLD_SIZE) or by MPI launchers for each process they start.
WORLD_SIZE_VARS = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


def launched_processes() -> int:
    """How many processes the launcher says it started (1 when started without one)."""
    for name in WORLD_SIZE_VARS:
        if os.environ.get(name):
            return int(os.environ[name])
    return 1


def use_cpu_processes() -> bool:
    """True for several processes on a machine without a GPU: accelerate then needs `cpu=True` to join them
    with gloo (its torchrun launcher does not pass `use_cpu` on, and each process would train alone)."""
    return launched_processes() > 1 and not torch.cuda.is_available()


def check_processes(accelerator: Accelerator) -> None:
    """Raise a `ValueError` when the job has fewer processes than the launcher was asked for."""
    launched = launched_processes()
    if accelerator.num_processes != launched:
        raise ValueError(f"the launcher started {launched} processes but they did not join one job "
                         f"(accelerate sees {accelerator.num_processes}, {accelerator.distributed_type})")
    # accelerate's simple launcher sets MASTER_ADDR only when asked for several processes, then starts one.
    if launched == 1 and "ACCELERATE_MIXED_PRECISION" in os.environ and "MASTER_ADDR" in os.environ:
        raise ValueError("accelerate launch was asked for several processes (or machines) but started only one: "
                         "on CPUs use train/configs/accelerate_cpu_2proc.yaml, on GPUs accelerate_multigpu.yaml "
                         "(unset MASTER_ADDR if one process was meant)")


def check_replicas(accelerator: Accelerator, modules: list[torch.nn.Module]) -> str:
    """Compare a digest of the modules' weights across processes; raise a `RuntimeError` naming the ranks
    that differ (DDP keeps replicas identical, so a difference is a bug). Returns the digest."""
    h = hashlib.sha256()
    for module in modules:
        for value in module.state_dict().values():
            h.update(value.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    mine = torch.tensor([int(h.hexdigest()[:15], 16)], dtype=torch.int64, device=accelerator.device)
    digests = accelerator.gather(mine).tolist()
    differ = [rank for rank, d in enumerate(digests) if d != digests[0]]
    if differ:
        raise RuntimeError(f"the weights of rank(s) {differ} differ from rank 0's: the processes are out of sync")
    return h.hexdigest()[:12]
