"""The one device resolver: what `device: auto | cpu | cuda | cuda:N` means on this machine."""

import re

import torch

from catdog.errors import ConfigError


def resolve_device(name: str, local_rank: int | None = None) -> torch.device:
    """The device `name` picks; under torchrun (`local_rank` given) the process's own GPU.

    Under torchrun each process owns one GPU, `cuda:LOCAL_RANK`, so `cuda:N` (one GPU for all)
    is refused. Anything that doesn't exist here is one line naming the key.
    """
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", name):
        raise ConfigError(f"device: {name!r}: must be auto, cpu, cuda or cuda:N")
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if local_rank is not None and name not in ("auto", "cuda"):
        raise ConfigError(
            f"device: {name!r} names one GPU, but under torchrun each process takes "
            "cuda:LOCAL_RANK; set device: cuda (or auto)"
        )
    if not torch.cuda.is_available():
        raise ConfigError(
            f"device: {name!r} asked for, but CUDA is not available here; use device: auto or cpu"
        )
    count = torch.cuda.device_count()
    if local_rank is not None:
        if local_rank >= count:
            raise ConfigError(
                f"LOCAL_RANK {local_rank}: this machine has {count} CUDA devices; start at most "
                f"{count} processes per node (--nproc or torchrun's --nproc_per_node)"
            )
        return torch.device("cuda", local_rank)
    device = torch.device("cuda" if name == "auto" else name)
    if device.index is not None and device.index >= count:
        raise ConfigError(f"device: {name!r} does not exist; this machine has {count} CUDA devices")
    return device
