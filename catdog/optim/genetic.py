"""A genetic algorithm over the flattened weights: no gradients, only loss evaluations."""

import math
from collections.abc import Callable, Iterable
from typing import Any, Literal

import torch

from catdog.optim._checks import check_choice, check_integer, check_number
from catdog.optim.base import Optimizer

Crossover = Literal["uniform", "blend", "none"]
CROSSOVERS: tuple[str, ...] = ("uniform", "blend", "none")

# At the peak of a generation we hold the population, the next generation being bred into,
# and two offspring-sized temporaries (second parents and crossover weights, or mutation
# noise and its keep-mask); see `_breed`.
_POPULATION_COPIES_AT_PEAK = 4


class Genetic(Optimizer):
    r"""Evolves a population of weight vectors; one `step` is one generation.

    .. math::
       \begin{aligned}
         &\textbf{input}: x \in \mathbb{R}^D \text{ (all parameters, flattened)},
             N \text{ (population)}, E \text{ (elite)}, k \text{ (tournament)},       \\
         &\hspace{13mm} \sigma_0 \text{ (mutation std)}, \gamma \text{ (decay)},
             \rho \text{ (mutation rate)}, \alpha \text{ (blend)}, f \text{ (closure)} \\
         &\textbf{mutate}(c, t) = c + \sigma_0 \gamma^{t-1} (m \odot \epsilon),
             \quad \epsilon \sim \mathcal{N}(0, I_D),\ m_j \sim \mathrm{Bernoulli}(\rho) \\
         &\textbf{for}\: t=1 \: \textbf{to} \: \ldots \: \textbf{do}
             \quad \text{(one call of step)}                                          \\
         &\hspace{5mm}\textbf{if}\: t = 1:\ P_1 \leftarrow
             [x;\ \mathrm{mutate}(x, 1);\ \ldots;\ \mathrm{mutate}(x, 1)]
             \quad (N \text{ rows})                                                   \\
         &\hspace{5mm}\textbf{else}:\ P_t[1..E] \leftarrow \text{the } E
             \text{ rows of } P_{t-1} \text{ with the lowest } L_{t-1}                \\
         &\hspace{10mm}\textbf{for each of the } N - E \text{ children}:              \\
         &\hspace{15mm}a, b \leftarrow \text{two tournament winners: each the}
             \arg\min L_{t-1} \text{ of } k \text{ rows drawn with replacement}       \\
         &\hspace{15mm}w \leftarrow \mathrm{Bernoulli}(1/2)^D \text{ (uniform)},\
             \mathcal{U}(-\alpha, 1+\alpha)^D \text{ (blend)},\ 0 \text{ (none)}      \\
         &\hspace{15mm}\text{child} \leftarrow \mathrm{mutate}(a + w \odot (b - a), t) \\
         &\hspace{5mm}L_t[i] \leftarrow f() \text{ with } P_t[i]
             \text{ loaded into the parameters}, \quad i = 1..N                       \\
         &\hspace{5mm}x \leftarrow P_t[\arg\min_i L_t[i]]                             \\
         &\hspace{5mm}\textbf{return} \: \min_i L_t[i]
       \end{aligned}

    The elites are re-evaluated every generation (N closure calls per step) because the
    closure usually sees a new mini-batch; on a fixed closure this makes the returned
    loss non-increasing whenever E >= 1. A NaN loss ranks last. The current weights are
    row 1 of the first population and, from then on, the best elite. Whole-population
    tensor ops breed the children; only the evaluation loops, once per member.

    The closure returns the loss without calling backward, and the training loop runs
    it under `torch.no_grad()` (`uses_gradients = False`); `.grad` is never touched.
    `step` calls it itself, once per member (`needs_closure = True`).
    There is no learning rate, so `lr` is not accepted.

    Memory is population x parameters: the population alone is N*D numbers, and
    breeding peaks at 4*N*D (`memory_bytes`); e.g. 50 members of a 6.3M-weight network
    need about 5 GB in float32. Keep the network small.

    Args:
        params: the parameters to evolve, one group, all of one dtype and device.
        population: N >= 2, members per generation.
        elite: 0 <= E < N best members copied unchanged into the next generation.
        tournament: 1 <= k <= N members drawn per parent; larger k, greedier selection.
        crossover: "uniform" (each gene from either parent), "blend" (BLX-alpha, each
            gene drawn around the segment between the parents), or "none" (children are
            mutated copies of one parent).
        blend_alpha: alpha >= 0 for blend; 0 keeps each gene between the parents'.
        mutation_std: sigma_0 >= 0, std of the Gaussian added to mutated genes.
        mutation_decay: gamma in (0, 1]; sigma shrinks by gamma each generation.
        mutation_rate: rho in (0, 1], probability that a given gene of a child mutates.
        seed: seeds the optimizer's own `torch.Generator` on the parameters' device.
    """

    uses_gradients = False
    needs_closure = True

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        population: int = 32,
        elite: int = 2,
        tournament: int = 3,
        crossover: Crossover = "uniform",
        blend_alpha: float = 0.5,
        mutation_std: float = 0.01,
        mutation_decay: float = 1.0,
        mutation_rate: float = 1.0,
        seed: int = 0,
    ) -> None:
        defaults = dict(
            population=population,
            elite=elite,
            tournament=tournament,
            crossover=crossover,
            blend_alpha=blend_alpha,
            mutation_std=mutation_std,
            mutation_decay=mutation_decay,
            mutation_rate=mutation_rate,
            seed=seed,
        )
        super().__init__(params, defaults)
        if len(self.param_groups) != 1:
            raise ValueError(
                "the genetic algorithm evolves all parameters as one vector; "
                f"pass one parameter group, not {len(self.param_groups)}"
            )
        params_list = self.param_groups[0]["params"]
        if len({(p.dtype, p.device) for p in params_list}) != 1:
            raise ValueError("all parameters must share one dtype and device to be flattened")
        self._generator = torch.Generator(device=params_list[0].device)

    @classmethod
    def check_settings(cls, hyperparameters: dict[str, Any]) -> None:
        check_integer("population", hyperparameters.get("population"), 2)
        population = int(hyperparameters["population"])
        check_integer("elite", hyperparameters.get("elite"), 0, population - 1)
        check_integer("tournament", hyperparameters.get("tournament"), 1, population)
        check_choice("crossover", hyperparameters.get("crossover"), CROSSOVERS)
        check_number("blend_alpha", hyperparameters.get("blend_alpha"), 0.0)
        check_number("mutation_std", hyperparameters.get("mutation_std"), 0.0)
        for rate in ("mutation_decay", "mutation_rate"):
            check_number(rate, hyperparameters.get(rate), 0.0, 1.0, low_open=True, high_closed=True)
        check_integer("seed", hyperparameters.get("seed"), 0)

    @classmethod
    def memory_bytes(
        cls,
        weights: int,
        population: int = 32,
        dtype: torch.dtype = torch.float32,
        **hyperparameters: Any,
    ) -> int:
        """Peak bytes breeding allocates: 4 population-sized tensors, 4 * N * D numbers."""
        itemsize = torch.empty((), dtype=dtype).element_size()
        return _POPULATION_COPIES_AT_PEAK * population * weights * itemsize

    @property
    def generation(self) -> int:
        """Generations evaluated so far (= steps taken)."""
        return self._state().get("generation", 0)

    @property
    def evaluations(self) -> int:
        """Closure calls so far: population * generations."""
        return self._state().get("evaluations", 0)

    def _state(self) -> dict[str, Any]:
        # The whole algorithm's state lives under the first parameter, so the base class's
        # state_dict()/load_state_dict() save it and move the population to the
        # parameters' device. load_state_dict casts tensors to the parameters' dtype, so
        # the losses stay a list of Python floats and the generator state stays bytes:
        # both come back bit for bit, and a resumed run ranks exactly as before.
        return self.state[self.param_groups[0]["params"][0]]

    @torch.no_grad()
    def step(self, closure: Callable[[], float | torch.Tensor] | None = None) -> float:  # type: ignore[override]
        """Breed (or, on the first call, create) a generation, evaluate it, load its best.

        `closure` loads nothing itself: it runs the model on the current mini-batch and
        returns the loss, without backward. Returns the best member's loss.
        """
        if closure is None:
            raise TypeError(
                "Genetic.step needs a closure that returns the mini-batch loss without "
                "calling backward; the training loop passes one when uses_gradients is False"
            )
        group = self.param_groups[0]
        params: list[torch.Tensor] = group["params"]
        state = self._state()
        if "population" in state:
            self._generator.set_state(_bytes_to_tensor(state["generator"]))
            population = self._breed(state["population"], state["losses"], group)
        else:
            self._generator.manual_seed(group["seed"])
            population = self._first_population(_flatten(params), group)

        losses = []
        for member in population:
            _load(params, member)
            losses.append(float(closure()))
        best = int(_ranking(losses, population.device).argmin())
        _load(params, population[best])

        state["population"] = population
        state["losses"] = losses
        state["generator"] = _tensor_to_bytes(self._generator.get_state())
        state["generation"] = state.get("generation", 0) + 1
        state["evaluations"] = state.get("evaluations", 0) + len(losses)
        return losses[best]

    def _first_population(self, weights: torch.Tensor, group: dict[str, Any]) -> torch.Tensor:
        """The current weights and N - 1 mutants of them."""
        population = weights.repeat(group["population"], 1)
        population[1:] += self._mutation(population[1:].shape, weights, group, generation=0)
        return population

    def _breed(
        self, population: torch.Tensor, losses: list[float], group: dict[str, Any]
    ) -> torch.Tensor:
        """Next generation: elites, then tournament-selected, crossed-over, mutated children."""
        size, elite = group["population"], group["elite"]
        ranking = _ranking(losses, population.device)
        offspring = size - elite
        # Ties go to the lower index in both the elite sort and the tournaments, so a
        # resumed run ranks exactly as the uninterrupted one.
        elites = torch.argsort(ranking, stable=True)[:elite]
        entrants = torch.randint(
            size,
            (offspring, 2, group["tournament"]),
            generator=self._generator,
            device=population.device,
        )
        winners = entrants.gather(-1, ranking[entrants].argmin(-1, keepdim=True)).squeeze(-1)

        next_population = torch.empty_like(population)
        next_population[:elite] = population[elites]
        children = next_population[elite:]
        torch.index_select(population, 0, winners[:, 0], out=children)
        if group["crossover"] != "none":
            second_parents = population[winners[:, 1]]
            weights = torch.rand(
                children.shape,
                generator=self._generator,
                dtype=children.dtype,
                device=children.device,
            )
            if group["crossover"] == "uniform":
                weights = weights.lt_(0.5)  # in place: 1.0 takes the gene from b, 0.0 from a
            else:
                alpha = group["blend_alpha"]
                weights = weights.mul_(1 + 2 * alpha).sub_(alpha)
            children.lerp_(second_parents, weights)
            del second_parents, weights  # free before the mutation's temporaries
        generation = self.generation
        children += self._mutation(children.shape, children, group, generation)
        return next_population

    def _mutation(
        self, shape: torch.Size, like: torch.Tensor, group: dict[str, Any], generation: int
    ) -> torch.Tensor:
        """sigma_0 gamma^generation (m * eps): eps ~ N(0, I), m ~ Bernoulli(rho) per gene."""
        std = group["mutation_std"] * group["mutation_decay"] ** generation
        noise = torch.randn(shape, generator=self._generator, dtype=like.dtype, device=like.device)
        noise *= std
        if group["mutation_rate"] < 1.0:
            keep = torch.rand(
                shape, generator=self._generator, dtype=like.dtype, device=like.device
            )
            noise *= keep.lt_(group["mutation_rate"])
        return noise


def _ranking(losses: list[float], device: torch.device) -> torch.Tensor:
    """Losses as float64 with NaN mapped to +inf, so a diverged member ranks last."""
    return torch.tensor(losses, dtype=torch.float64, device=device).nan_to_num_(nan=math.inf)


def _flatten(params: list[torch.Tensor]) -> torch.Tensor:
    """All parameters as one new vector, in `params` order."""
    return torch.cat([p.detach().reshape(-1) for p in params])


def _load(params: list[torch.Tensor], vector: torch.Tensor) -> None:
    """Copy `vector` into the parameters in place (the inverse of `_flatten`)."""
    for param, chunk in zip(params, vector.split([p.numel() for p in params]), strict=True):
        param.copy_(chunk.view_as(param))


def _tensor_to_bytes(tensor: torch.Tensor) -> bytes:
    return bytes(tensor.tolist())


def _bytes_to_tensor(data: bytes) -> torch.Tensor:
    return torch.tensor(list(data), dtype=torch.uint8)
