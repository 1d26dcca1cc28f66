"""An optimizer's functional step, run eagerly or compiled by torch.compile (Inductor).

The eager step is the readable reference: foreach kernels, a few passes over memory. Compiled,
Inductor fuses the same maths into one C++/OpenMP loop on the CPU (Triton on CUDA), one pass.
Compilation costs seconds once per process (tens of seconds on a cold cache); Inductor keeps
what it built on disk (`TORCHINDUCTOR_CACHE_DIR`, by default /tmp/torchinductor_<user>), so a
later run with the same shapes loads it instead.

`compile="auto"` compiles only where it was measured to pay (`AUTO_MIN_WEIGHTS`), and where
torch.compile can't run (no C++ compiler, no Triton, an old torch) every setting falls back to
the eager step with one warning.
"""

import warnings
from collections.abc import Callable
from typing import Any, Literal

import torch

from catdog.optim._checks import check_choice

Compile = Literal["auto"] | bool
COMPILE_SETTINGS: tuple[object, ...] = ("auto", True, False)

AUTO_MIN_WEIGHTS = 1 << 20
"""`auto` compiles on the CPU from this many parameters (all groups together) on: below it the
compiled call's fixed cost (guards, launching) eats the saving. Measured with
scripts/bench_optim.py, one thread: on the default recipe's 1.84M weights compiled Adam took
0.48x its eager step, RMSprop 0.48x, Nesterov 0.79x; on 0.59M only Adam and RMSprop gained."""

_compiled: dict[Callable[..., None], Callable[..., None]] = {}
_full: set[Callable[..., None]] = set()
"""Functions whose graph limit was reached (and said so)."""
_unavailable: str | None = None
"""Why torch.compile can't run here, once found out (then every step runs eagerly)."""


def check_compile(setting: object) -> None:
    check_choice("compile", setting, COMPILE_SETTINGS)


def wants_compile(setting: Compile, params: list[torch.Tensor], pays: bool = True) -> bool:
    """Whether a step over `params` should be compiled: always, never, or (auto) where it pays.

    `auto` compiles an optimizer whose eager step takes several passes over memory (`pays`), on
    the CPU, from `AUTO_MIN_WEIGHTS` weights on. It was measured on the CPU only: on CUDA it
    stays eager (say `compile=True` to try it).
    """
    if setting is False or not params:
        return False
    if setting == "auto":
        if not pays:
            return False
        on_cpu = all(param.device.type == "cpu" for param in params)
        if not on_cpu or sum(param.numel() for param in params) < AUTO_MIN_WEIGHTS:
            return False
    reason = _unavailable or _why_not(params[0].device)
    if reason is not None:
        _give_up(reason)
        return False
    return True


def run_compiled(function: Callable[..., None], **arguments: Any) -> bool:
    """Run `function(**arguments)` compiled; False, with nothing changed, if it can't compile."""
    if _unavailable is not None:
        return False
    step = _compiled.get(function)
    if step is None:
        step = _compiled[function] = torch.compile(function)
    try:
        step(**arguments)
    except torch._dynamo.exc.BackendCompilerFailed as error:
        # Raised before the compiled graph ran: nothing was updated, the eager step is safe.
        _give_up(f"torch.compile failed ({str(error).splitlines()[0]})")
        return False
    return True


def has_room(function: Callable[..., None]) -> bool:
    """Whether Dynamo will still compile `function` for one more network in this process.

    Dynamo keeps at most `recompile_limit` graphs (8) of a function. Past them it runs the
    function uncompiled but with the compiled path's 0-d tensor scalars, which measured 2-5x
    slower than torch's fused step: an optimizer that would land there (a tune's later trials,
    say) takes the eager step, with Python numbers, instead, and says so once per function.
    True where this torch can't tell.
    """
    try:
        from torch._C._dynamo.eval_frame import _debug_get_cache_entry_list

        config = torch._dynamo.config
        limit = getattr(config, "recompile_limit", None) or config.cache_size_limit
        graphs = len(_debug_get_cache_entry_list(function.__code__))
    except (ImportError, AttributeError):
        return True
    if graphs < limit:
        return True
    if function not in _full:
        _full.add(function)
        warnings.warn(
            f"optimizer compile: torch.compile holds {graphs} graphs of {function.__name__} in "
            "this process already, its limit; further networks take the eager step",
            RuntimeWarning,
            stacklevel=3,
        )
    return False


def _why_not(device: torch.device) -> str | None:
    """Why torch.compile can't compile for `device` here, or None if it can."""
    version = tuple(int(part) for part in torch.__version__.split(".")[:2])
    if version < (2, 4):
        return f"torch {torch.__version__} is older than 2.4"
    if not torch._dynamo.is_dynamo_supported():
        return "torch.compile does not support this Python"
    if device.type == "cpu":
        try:
            from torch._inductor.cpp_builder import get_cpp_compiler

            get_cpp_compiler()
        except Exception:  # the search raises its own error type, which moves between versions
            return "no working C++ compiler (set CXX, or install g++)"
    elif device.type == "cuda":
        from torch.utils._triton import has_triton

        if not has_triton():
            return "Triton is not installed"
    else:
        return f"Inductor does not compile for {device.type}"
    return None


def _give_up(reason: str) -> None:
    global _unavailable
    if _unavailable is None:
        _unavailable = reason
        warnings.warn(
            f"optimizer compile: {reason}; the optimizers take their eager steps",
            RuntimeWarning,
            stacklevel=3,
        )
