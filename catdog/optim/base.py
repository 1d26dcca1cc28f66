"""What every catdog optimizer shares: validated param groups, and the protocol the loop reads.

The training loop (and the ravine) drive any optimizer through `step(optimizer, closure)`, which
reads two class attributes instead of guessing with getattr:

- `needs_closure`: `optimizer.step(closure)` calls the closure itself, maybe several times
  (Nesterov's literal look-ahead once, at the look-ahead point; the genetic algorithm once per
  member). Otherwise the closure runs once here, before a plain `optimizer.step()`.
- `uses_gradients`: False when the closure must only return the loss, without backward, and can
  run under `torch.no_grad()` (the genetic algorithm).

and `memory_bytes(weights, **hyperparameters)`, an upper bound on what the optimizer allocates
for a network of `weights` numbers, so a run can be refused before it starts.
"""

from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import torch
from torch import Tensor

from catdog.optim import _compile
from catdog.optim._compile import Compile


class Optimizer(torch.optim.Optimizer):
    """A `torch.optim.Optimizer` whose hyperparameters are checked for every param group."""

    uses_gradients: ClassVar[bool] = True
    needs_closure: bool = False
    compile_pays: ClassVar[bool] = True
    """Whether `compile="auto"` compiles the step: its eager form takes several passes over
    memory, which Inductor fuses into one."""
    parameter_copies: ClassVar[int] = 0
    """Parameter-sized tensors the optimizer holds at its peak: its state and the step's
    temporaries (a weight-decayed gradient adds one more)."""

    def __init__(
        self,
        params: Iterable[Any],
        defaults: dict[str, Any],
        compile: Compile = False,
        **arguments: Any,
    ) -> None:
        """`defaults` are the group settings; `arguments`, other constructor arguments to check."""
        self.check_hyperparameters(defaults | arguments | {"compile": compile})
        super().__init__(params, defaults)
        # Not a group setting: a state_dict saved by one path loads into the other.
        self.compile = compile
        self._compiled: bool | None = None  # decided at the first step, on the params then
        self._lr_tensor: Tensor | None = None  # the compiled step's lr, refilled every step
        self._compiled_functions: set[Callable[..., None]] = set()  # compiled by this optimizer

    def apply_step(self, function: Callable[..., None], *, lr: float, **arguments: Any) -> None:
        """Run the functional step `function` on one group's lists, compiled or eagerly.

        Compiled, lr goes in as a 0-d tensor (one, refilled every step) so that no new value
        recompiles; eagerly, as the Python number the kernels take directly. Step counts stay
        0-d tensors either way: the functional steps count them themselves (`maths.count_steps`).
        """
        if self._compiled is None:
            params = [p for group in self.param_groups for p in group["params"]]
            self._compiled = _compile.wants_compile(self.compile, params, self.compile_pays)
        if self._compiled and function not in self._compiled_functions:
            # This optimizer's first step of `function`: one more graph, if Dynamo has room.
            if _compile.has_room(function):
                self._compiled_functions.add(function)
            else:
                self._compiled = False
        if self._compiled:
            if self._lr_tensor is None:
                self._lr_tensor = torch.tensor(lr, dtype=torch.float64)
            self._lr_tensor.fill_(lr)
            if _compile.run_compiled(function, lr=self._lr_tensor, **arguments):
                return
            self._compiled = False  # it could not compile (nothing ran): eager from now on
        function(lr=lr, **arguments)

    @classmethod
    def check_hyperparameters(cls, hyperparameters: dict[str, Any]) -> None:
        """Raise a `ValueError` naming the first bad value among constructor arguments (all of
        them, or one param group's settings), without building an optimizer."""
        if "compile" in hyperparameters:
            _compile.check_compile(hyperparameters["compile"])
        cls.check_settings(hyperparameters)

    @classmethod
    def check_settings(cls, hyperparameters: dict[str, Any]) -> None:
        """Each optimizer's own checks; the keys a param group has are always there."""

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        # torch calls this for each group passed to __init__ too: every group is checked whole.
        self.check_hyperparameters(self.defaults | param_group)
        super().add_param_group(param_group)

    def initialized_state(
        self, param: Tensor, *tensors: str, counts_steps: bool = False
    ) -> dict[str, Any]:
        """`param`'s state, made on first use: a zero tensor like it for each name in `tensors`,
        and a step count of 0 when `counts_steps` (a float64 0-d tensor on the CPU, exact to
        2^53 steps, which `load_state_dict` leaves where it is, as torch does for "step")."""
        state = self.state[param]
        if not state:
            for name in tensors:
                state[name] = torch.zeros_like(param, memory_format=torch.preserve_format)
            if counts_steps:
                state["step"] = torch.tensor(0.0, dtype=torch.float64)
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        # Checkpoints written before the step counts became tensors hold Python ints.
        for state in self.state.values():
            if isinstance(state.get("step"), int):
                state["step"] = torch.tensor(float(state["step"]), dtype=torch.float64)

    @classmethod
    def memory_bytes(
        cls,
        weights: int,
        *,
        dtype: torch.dtype = torch.float32,
        **hyperparameters: Any,
    ) -> int:
        """Peak bytes beyond the weights and their gradients, for `weights` numbers of `dtype`."""
        copies = cls.parameter_copies + (hyperparameters.get("weight_decay", 0) != 0)
        return copies * weights * torch.empty((), dtype=dtype).element_size()


def step(optimizer: Optimizer, closure: Callable[[], Any]) -> Tensor:
    """One step of `optimizer`, with or without the closure as it needs; returns the loss, detached.

    `closure` zeroes the grads, runs forward and (when `optimizer.uses_gradients`) backward, and
    returns the loss. A torch optimizer (the benchmarks' fused baselines) lacks our two flags; it
    takes gradients and no closure.
    """
    if getattr(optimizer, "needs_closure", False):
        loss = optimizer.step(closure)
    else:
        loss = closure()
        optimizer.step()
    return torch.as_tensor(loss).detach()
