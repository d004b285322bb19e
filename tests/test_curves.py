"""Training curves: the engine's per-step statistics, curves.csv and curves.png, and that recording them changes
nothing about training."""
import math

import pytest
import torch
from torch import nn

from dpbench.privacy import step_statistics
from dpbench.privacy.engine import DPSettings, PrivateTrainer
from dpbench.privacy.step_statistics import ROW_BUDGET, StepStatistics
from dpbench.run.curves import COLUMNS, CURVES_CSV, CURVES_PNG, OUTSIDE_DP, read_curves, write_curves


class TinyRegressor(nn.Module):
    def __init__(self):
        super().__init__()
        self.hidden, self.out = nn.Linear(4, 8), nn.Linear(8, 1)

    def forward(self, x):
        return self.out(torch.tanh(self.hidden(x)))


def regression_loss(model_fn, example):
    return (model_fn(example["x"].unsqueeze(0)).squeeze() - example["y"]) ** 2


def trainer(steps=30, epsilon=5.0, max_grad_norm=0.5, stage=0, prior=()):
    torch.manual_seed(0)
    x, y = torch.randn(400, 4), torch.randn(400) * 3
    settings = DPSettings(expected_batch_size=40, steps=steps, max_grad_norm=max_grad_norm, physical_batch_size=16)
    return PrivateTrainer(TinyRegressor(), regression_loss, lambda examples, generator: examples, settings,
                          private_x=x, private_y=y, epsilon=epsilon, delta=1e-5, device=torch.device("cpu"), seed=0,
                          stage=stage, prior=prior)


def run(engine):
    engine.run(torch.optim.SGD(list(engine.trainable.values()), lr=0.05))
    return {n: p.detach().clone() for n, p in engine.trainable.items()}


def test_recording_curves_changes_no_parameter_no_noise_and_no_sample(monkeypatch):
    """The loss is computed on the step's own examples in eval mode with the random streams forked: a run with
    curves ends bit for bit where a run without them does."""
    with_curves = trainer()
    params_with = run(with_curves)
    monkeypatch.setattr(StepStatistics, "chunk", lambda self, batch, norms: None)
    monkeypatch.setattr(StepStatistics, "step", lambda self, step, model, released: None)
    without = trainer()
    params_without = run(without)
    assert with_curves.batch_sizes == without.batch_sizes
    assert all(torch.equal(params_with[n], params_without[n]) for n in params_with)
    assert len(with_curves.statistics.rows) == 30 and not without.statistics.rows


def test_rows_are_capped_and_end_at_the_last_planned_step():
    engine = trainer(steps=250)
    run(engine)
    steps = [row.step for row in engine.statistics.rows]
    assert len(steps) <= ROW_BUDGET and steps[-1] == 250 and steps == sorted(steps)
    assert steps[:2] == [engine.statistics.stride, 2 * engine.statistics.stride] == [3, 6]


def test_clip_fraction_counts_the_examples_over_the_clip_norm():
    stats = StepStatistics(lambda model, example: torch.tensor(0.0), planned_steps=1, noise_std=0.0, dimension=3,
                           max_grad_norm=1.0)
    stats.chunk({"x": torch.zeros(3, 1)}, torch.tensor([0.5, 2.0, 3.0]))
    stats.chunk({"x": torch.zeros(1, 1)}, torch.tensor([0.9]))
    stats.step(1, nn.Linear(1, 1), {"w": torch.tensor([3.0, 4.0, 0.0])})
    row = stats.rows[0]
    assert row.clip_fraction_outside_dp == 0.5 and row.released_grad_norm == 5.0
    assert row.noise_to_signal == 0.0  # no noise: nothing to compare the signal to


def test_noise_to_signal_from_the_released_sum_estimates_the_true_ratio():
    """‖s̃‖² − σ²C²d estimates ‖s‖² from the released sum alone; over many steps the ratio lands near the truth."""
    d, noise_std, steps = 20_000, 2.0, 50
    g = torch.Generator().manual_seed(0)
    signal = torch.randn(d, generator=g)
    signal *= 60.0 / signal.norm()  # true ratio: 2 * sqrt(20000) / 60 = 4.71
    stats = StepStatistics(lambda model, example: torch.tensor(0.0), planned_steps=steps, noise_std=noise_std,
                           dimension=d, max_grad_norm=1.0)
    for step in range(1, steps + 1):
        stats.chunk({"x": torch.zeros(1, 1)}, torch.tensor([0.1]))
        stats.step(step, nn.Linear(1, 1), {"w": signal + noise_std * torch.randn(d, generator=g)})
    truth = noise_std * math.sqrt(d) / 60.0
    assert stats.rows[-1].noise_to_signal == pytest.approx(truth, rel=0.1)
    pure_noise = StepStatistics(lambda model, example: torch.tensor(0.0), planned_steps=1, noise_std=noise_std,
                                dimension=d, max_grad_norm=1.0)
    pure_noise.step(1, nn.Linear(1, 1), {"w": noise_std * torch.randn(d, generator=g) * 0.99})
    assert pure_noise.rows[0].noise_to_signal == math.inf  # below what the released sum can show


@pytest.mark.slow  # renders the PNG (matplotlib); the full suite keeps it
def test_curves_csv_and_png_with_epsilon_spent_from_the_ledger_values(tmp_path):
    first = trainer(steps=20)
    run(first)
    second = trainer(steps=10, stage=1, prior=[first.plan.history_entry()])
    run(second)
    entry = write_curves(tmp_path, [first, second], delta=1e-5, title="test")
    assert entry == {"csv": CURVES_CSV, "plot": CURVES_PNG, "rows": 30, "outside_dp_columns": list(OUTSIDE_DP)}
    assert (tmp_path / CURVES_PNG).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    header = (tmp_path / CURVES_CSV).read_text().splitlines()[0]
    assert header.split(",") == list(COLUMNS)
    assert [c for c in COLUMNS if c.endswith("_outside_dp")] == ["loss_outside_dp", "clip_fraction_outside_dp"]
    rows = read_curves(tmp_path / CURVES_CSV)
    eps = [r["epsilon_spent"] for r in rows]
    assert eps == sorted(eps) and [r["stage"] for r in rows] == [0] * 20 + [1] * 10
    assert eps[19] == pytest.approx(first.epsilon_so_far(), rel=1e-5)
    assert eps[-1] == pytest.approx(second.epsilon_so_far(), rel=1e-5) and eps[-1] <= 5.0 * (1 + 1e-6)
    assert all(0 <= r["clip_fraction_outside_dp"] <= 1 for r in rows)
    assert any(r["clip_fraction_outside_dp"] > 0 for r in rows)  # C = 0.5 on targets of spread 3 clips some


def test_a_non_private_stage_has_infinite_epsilon_and_no_noise(tmp_path):
    engine = trainer(steps=5, epsilon=math.inf)
    run(engine)
    write_curves(tmp_path, [engine], delta=1e-5)
    rows = read_curves(tmp_path / CURVES_CSV)
    assert all(math.isinf(r["epsilon_spent"]) and r["noise_to_signal"] == 0.0 for r in rows)
    assert all(r["clip_fraction_outside_dp"] == 0.0 for r in rows)  # nothing is clipped without a clip norm


def test_no_dp_stage_writes_no_curves(tmp_path):
    assert write_curves(tmp_path, [], delta=1e-5) is None
    assert not (tmp_path / CURVES_CSV).exists()


def test_the_loss_is_a_few_examples_of_the_step(monkeypatch):
    monkeypatch.setattr(step_statistics, "LOSS_EXAMPLES", 2)
    seen = []

    def loss(model_fn, example):
        seen.append(example["x"].shape)
        return torch.tensor(1.5)

    stats = StepStatistics(loss, planned_steps=1, noise_std=0.0, dimension=1, max_grad_norm=None)
    stats.chunk({"x": torch.zeros(5, 3), "y": torch.zeros(5)}, torch.ones(5))
    stats.step(1, nn.Linear(3, 1), {"w": torch.ones(1)})
    assert seen == [torch.Size([3])] * 2 and stats.rows[0].loss_outside_dp == 1.5
