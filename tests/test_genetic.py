"""The genetic algorithm on toy problems with known optima; no gradients anywhere."""

import io
import itertools
import re
from collections.abc import Callable

import pytest
import torch
from torch import nn

from catdog.optim.genetic import Genetic


def least_squares_problem(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """64 noisy points of y = X w + b, float64."""
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn(64, 3, generator=generator, dtype=torch.float64)
    targets = inputs @ torch.tensor([1.5, -2.0, 0.5], dtype=torch.float64) + 0.7
    targets += 0.1 * torch.randn(64, generator=generator, dtype=torch.float64)
    return inputs, targets


def mse_closure(
    model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor
) -> Callable[[], torch.Tensor]:
    def closure() -> torch.Tensor:
        return ((model(inputs).squeeze(-1) - targets) ** 2).mean()

    return closure


def linear_model() -> nn.Linear:
    torch.manual_seed(0)
    return nn.Linear(3, 1).double()


def evolve(optimizer: Genetic, closure: Callable[[], torch.Tensor], steps: int) -> list[float]:
    with torch.no_grad():
        return [optimizer.step(closure) for _ in range(steps)]


def population(optimizer: Genetic) -> torch.Tensor:
    return optimizer.state_dict()["state"][0]["population"]


@pytest.mark.parametrize("crossover", ["uniform", "blend", "none"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_reaches_the_least_squares_optimum(crossover: str, seed: int) -> None:
    inputs, targets = least_squares_problem()
    design = torch.cat([inputs, torch.ones(64, 1, dtype=torch.float64)], dim=1)
    solution = torch.linalg.lstsq(design, targets.unsqueeze(1)).solution.squeeze(1)
    optimum = ((design @ solution - targets) ** 2).mean().item()

    model = linear_model()
    closure = mse_closure(model, inputs, targets)
    start = closure().item()
    optimizer = Genetic(
        model.parameters(),
        population=16,
        elite=2,
        tournament=3,
        crossover=crossover,
        mutation_std=0.3,
        mutation_decay=0.94,
        seed=seed,
    )
    final = evolve(optimizer, closure, 80)[-1]

    assert final - optimum < 1e-5 * (start - optimum)
    found = torch.cat([model.weight.detach().squeeze(0), model.bias.detach()])
    torch.testing.assert_close(found, solution, atol=0.01, rtol=0)


@pytest.mark.parametrize("crossover", ["uniform", "blend", "none"])
def test_elitism_never_lets_the_best_loss_rise(crossover: str) -> None:
    model = linear_model()
    closure = mse_closure(model, *least_squares_problem())
    # A large, undecayed sigma makes most children worse than their parents.
    optimizer = Genetic(
        model.parameters(), population=8, elite=1, crossover=crossover, mutation_std=2.0
    )
    losses = evolve(optimizer, closure, 60)

    assert all(later <= earlier for earlier, later in itertools.pairwise(losses))
    assert losses[-1] < losses[0]


def test_parameters_hold_the_best_member_and_its_loss_is_returned() -> None:
    model = linear_model()
    closure = mse_closure(model, *least_squares_problem())
    optimizer = Genetic(model.parameters(), population=16, mutation_std=0.5)
    for _ in range(5):
        best = evolve(optimizer, closure, 1)[0]
        assert closure().item() == best
        weights = torch.cat([model.weight.detach().flatten(), model.bias.detach()])
        assert any(torch.equal(weights, member) for member in population(optimizer))


def test_first_generation_evaluates_the_current_weights_first() -> None:
    model = linear_model()
    start = torch.cat([model.weight.detach().flatten(), model.bias.detach()])
    seen: list[torch.Tensor] = []

    def closure() -> torch.Tensor:
        seen.append(torch.cat([model.weight.flatten(), model.bias]).clone())
        return model.weight.sum() ** 2

    Genetic(model.parameters(), population=5, mutation_std=0.1).step(closure)

    assert len(seen) == 5
    assert torch.equal(seen[0], start)
    assert all(not torch.equal(member, start) for member in seen[1:])


def test_step_needs_no_gradients_and_leaves_grad_alone() -> None:
    model = linear_model()
    assert all(p.requires_grad for p in model.parameters())
    closure = mse_closure(model, *least_squares_problem())
    grad_enabled_in_closure: list[bool] = []

    def recording_closure() -> torch.Tensor:
        grad_enabled_in_closure.append(torch.is_grad_enabled())
        return closure()

    optimizer = Genetic(model.parameters(), population=6)
    with torch.no_grad():
        optimizer.step(recording_closure)
    optimizer.step(recording_closure)  # step disables autograd itself, too

    assert grad_enabled_in_closure == [False] * 12
    assert all(p.grad is None for p in model.parameters())


def test_nan_losses_rank_last() -> None:
    model = linear_model()
    start = torch.cat([model.weight.detach().flatten(), model.bias.detach()])

    def closure() -> torch.Tensor:
        # Every member but the current weights diverges.
        here = torch.cat([model.weight.flatten(), model.bias])
        return torch.tensor(1.0 if torch.equal(here, start) else float("nan"))

    optimizer = Genetic(model.parameters(), population=6, elite=1)
    assert evolve(optimizer, closure, 3) == [1.0, 1.0, 1.0]
    assert torch.equal(torch.cat([model.weight.detach().flatten(), model.bias.detach()]), start)


def test_evaluations_and_generations_count_closure_calls() -> None:
    model = linear_model()
    calls = 0

    def closure() -> torch.Tensor:
        nonlocal calls
        calls += 1
        return model.weight.sum() ** 2

    optimizer = Genetic(model.parameters(), population=7)
    assert (optimizer.evaluations, optimizer.generation) == (0, 0)
    evolve(optimizer, closure, 4)
    assert optimizer.evaluations == calls == 28
    assert optimizer.generation == 4


def test_uniform_crossover_only_recombines_genes_without_mutation() -> None:
    model = nn.Linear(50, 1).double()
    optimizer = Genetic(model.parameters(), population=10, elite=0, mutation_std=1.0)
    closure = mse_closure(model, torch.randn(8, 50, dtype=torch.float64), torch.zeros(8))
    evolve(optimizer, closure, 1)
    parents = population(optimizer).clone()
    optimizer.param_groups[0]["mutation_std"] = 0.0
    evolve(optimizer, closure, 1)
    children = population(optimizer)

    # Each gene of each child is that gene of some parent, and genes are mixed across
    # parents (a child equals a parent only when both tournaments picked it).
    assert (children.unsqueeze(1) == parents.unsqueeze(0)).any(dim=1).all()
    copies = sum(any(torch.equal(child, parent) for parent in parents) for child in children)
    assert copies < len(children)


def test_blend_crossover_with_zero_alpha_stays_between_the_parents() -> None:
    model = nn.Linear(50, 1).double()
    optimizer = Genetic(
        model.parameters(),
        population=10,
        elite=0,
        crossover="blend",
        blend_alpha=0.0,
        mutation_std=1.0,
    )
    closure = mse_closure(model, torch.randn(8, 50, dtype=torch.float64), torch.zeros(8))
    evolve(optimizer, closure, 1)
    parents = population(optimizer).clone()
    optimizer.param_groups[0]["mutation_std"] = 0.0
    evolve(optimizer, closure, 1)
    children = population(optimizer)

    low, high = parents.min(dim=0).values, parents.max(dim=0).values
    assert ((children >= low) & (children <= high)).all()
    assert not (children.unsqueeze(1) == parents.unsqueeze(0)).any(dim=1).all()


@pytest.mark.parametrize(("decay", "rate"), [(1.0, 1.0), (0.5, 1.0), (0.9, 0.25)])
def test_mutation_std_decays_geometrically_and_touches_a_rate_of_genes(
    decay: float, rate: float
) -> None:
    # Two members, one elite, no crossover: the child is one parent plus sigma_t m * eps.
    genes = 20_000
    weights = nn.Parameter(torch.zeros(genes, dtype=torch.float64))
    optimizer = Genetic(
        [weights],
        population=2,
        elite=1,
        tournament=1,
        crossover="none",
        mutation_std=0.1,
        mutation_decay=decay,
        mutation_rate=rate,
        seed=3,
    )
    closure = lambda: weights.sum()  # noqa: E731
    evolve(optimizer, closure, 1)
    for generation in range(1, 4):
        parents = population(optimizer).clone()
        evolve(optimizer, closure, 1)
        child = population(optimizer)[1]
        noise = min((child - parent for parent in parents), key=lambda d: int(d.count_nonzero()))
        mutated = noise[noise != 0]

        assert mutated.numel() / genes == pytest.approx(rate, abs=0.02)
        assert mutated.std().item() == pytest.approx(0.1 * decay**generation, rel=0.05)


def test_same_seed_repeats_exactly_and_another_seed_differs() -> None:
    def run(seed: int) -> tuple[list[float], torch.Tensor]:
        model = linear_model()
        closure = mse_closure(model, *least_squares_problem())
        optimizer = Genetic(model.parameters(), population=8, mutation_rate=0.5, seed=seed)
        return evolve(optimizer, closure, 10), model.weight.detach().clone()

    losses, weights = run(seed=5)
    again_losses, again_weights = run(seed=5)
    assert again_losses == losses
    assert torch.equal(again_weights, weights)
    assert run(seed=6)[0] != losses


@pytest.mark.parametrize("crossover", ["uniform", "blend"])
def test_state_dict_round_trip_resumes_the_identical_trajectory(crossover: str) -> None:
    inputs, targets = least_squares_problem()
    settings = dict(
        population=8, crossover=crossover, mutation_std=0.3, mutation_decay=0.9, mutation_rate=0.5
    )

    straight_model = linear_model()
    straight = Genetic(straight_model.parameters(), seed=1, **settings)
    uninterrupted = evolve(straight, mse_closure(straight_model, inputs, targets), 10)

    model = linear_model()
    optimizer = Genetic(model.parameters(), seed=1, **settings)
    first_half = evolve(optimizer, mse_closure(model, inputs, targets), 5)
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, buffer)
    buffer.seek(0)
    checkpoint = torch.load(buffer, weights_only=True)

    resumed_model = linear_model()
    resumed_model.load_state_dict(checkpoint["model"])
    resumed = Genetic(resumed_model.parameters(), seed=99, **settings)  # the checkpoint's seed wins
    resumed.load_state_dict(checkpoint["optimizer"])
    assert (resumed.generation, resumed.evaluations) == (5, 40)
    second_half = evolve(resumed, mse_closure(resumed_model, inputs, targets), 5)

    assert first_half + second_half == uninterrupted
    assert torch.equal(resumed_model.weight, straight_model.weight)
    assert torch.equal(population(resumed), population(straight))
    assert (resumed.generation, resumed.evaluations) == (10, 80)


def test_missing_closure_is_a_clear_error() -> None:
    optimizer = Genetic(linear_model().parameters())
    with pytest.raises(TypeError, match="closure"):
        optimizer.step()


@pytest.mark.parametrize(
    ("bad", "name"),
    [
        (dict(population=1), "population"),
        (dict(population=8.0), "population"),
        (dict(elite=-1), "elite"),
        (dict(population=4, elite=4), "elite"),
        (dict(tournament=0), "tournament"),
        (dict(population=4, tournament=5), "tournament"),
        (dict(crossover="single-point"), "crossover"),
        (dict(blend_alpha=-0.1), "blend_alpha"),
        (dict(mutation_std=-1.0), "mutation_std"),
        (dict(mutation_std=float("inf")), "mutation_std"),
        (dict(mutation_std=float("nan")), "mutation_std"),
        (dict(mutation_decay=0.0), "mutation_decay"),
        (dict(mutation_decay=1.5), "mutation_decay"),
        (dict(mutation_rate=0.0), "mutation_rate"),
        (dict(mutation_rate=True), "mutation_rate"),
        (dict(seed=-1), "seed"),
    ],
)
def test_bad_hyperparameters_name_the_value(bad: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        Genetic(linear_model().parameters(), **bad)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (dict(population=8.0), "Invalid population: 8.0 (must be an integer >= 2)"),
        (dict(population=4, elite=4), "Invalid elite: 4 (must be an integer in 0..3)"),
        (dict(population=4, tournament=5), "Invalid tournament: 5 (must be an integer in 1..4)"),
        (
            dict(crossover="single-point"),
            "Invalid crossover: 'single-point' (must be 'uniform' or 'blend' or 'none')",
        ),
        (dict(mutation_decay=1.5), "Invalid mutation_decay: 1.5 (must be in (0, 1])"),
        (dict(mutation_rate=0.0), "Invalid mutation_rate: 0.0 (must be in (0, 1])"),
        (dict(mutation_std=float("inf")), "Invalid mutation_std: inf (must be >= 0)"),
    ],
)
def test_bad_hyperparameters_read_as_the_other_optimizers_do(bad: dict, message: str) -> None:
    """One message format for every optimizer: "Invalid <name>: <value> (must be …)"."""
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        Genetic(linear_model().parameters(), **bad)


def test_mutation_rate_and_decay_may_be_one() -> None:
    Genetic(linear_model().parameters(), mutation_rate=1.0, mutation_decay=1)


def test_learning_rate_is_not_a_hyperparameter() -> None:
    with pytest.raises(TypeError, match="lr"):
        Genetic(linear_model().parameters(), lr=0.1)  # type: ignore[call-arg]


def test_parameters_must_flatten_into_one_vector() -> None:
    model = linear_model()
    with pytest.raises(ValueError, match="one parameter group"):
        Genetic([{"params": [model.weight]}, {"params": [model.bias]}])
    with pytest.raises(ValueError, match="dtype"):
        Genetic([model.weight, nn.Parameter(torch.zeros(1, dtype=torch.float32))])


def test_memory_bytes_is_four_populations() -> None:
    assert Genetic.memory_bytes(1_000, 50) == 4 * 50 * 1_000 * 4
    assert Genetic.memory_bytes(1_000, 50, torch.float64) == 2 * Genetic.memory_bytes(1_000, 50)
    model = linear_model()
    optimizer = Genetic(model.parameters(), population=12)
    evolve(optimizer, mse_closure(model, *least_squares_problem()), 1)
    stored = population(optimizer)
    assert stored.shape == (12, 4)
    assert 4 * stored.nbytes == Genetic.memory_bytes(4, 12, torch.float64)
