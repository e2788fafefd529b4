"""The helpers behind the chapters Training and Sampling, the FID table and the
benchmark: they run and give well-formed results. No timings are checked here."""
import importlib.util
import json
from pathlib import Path

import matplotlib
import pytest
import torch

matplotlib.use("Agg")

from smallunet import Scaled, ScheduleLogLinear, Unet  # noqa: E402
from smallunet.book.plotting import sampling as sp  # noqa: E402
from smallunet.book.plotting import training as tp  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return Scaled(Unet)(8, 1, 1, ch=32, ch_mult=(1, 2), attn_resolutions=()).eval()


def test_generate_is_reproducible_and_shared_across_samplers(tiny_model):
    sigmas = ScheduleLogLinear(N=50, sigma_min=0.01, sigma_max=20).sample_sigmas(3)
    a = sp.generate(tiny_model, sigmas, 5, 1.0, 0.0, batch=2, seed=3)
    b = sp.generate(tiny_model, sigmas, 5, 1.0, 0.0, batch=2, seed=3)
    assert a.shape == (5, 1, 8, 8)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    c = sp.generate(tiny_model, sigmas, 5, 1.0, 0.0, batch=2, seed=4)
    assert not torch.equal(a, c)


def test_trajectory_lengths_and_first_guess(tiny_model):
    sigmas = ScheduleLogLinear(N=50, sigma_min=0.01, sigma_max=20).sample_sigmas(4)
    xts, x0s = sp.trajectory(tiny_model, sigmas, batchsize=2, generator=torch.Generator().manual_seed(0))
    assert len(xts) == len(sigmas) and len(x0s) == len(sigmas) - 1
    with torch.no_grad():
        eps = tiny_model.predict_eps(xts[0], sigmas[0])
    torch.testing.assert_close(x0s[0], xts[0] - sigmas[0] * eps)
    # DDIM's last step from sigmas[-2] to sigmas[-1] lands where the guess says, up to sigma_min * eps
    assert (xts[-1] - x0s[-1]).abs().max() < 0.1


def test_fid_markdown_rows_and_floor():
    text = sp.fid_markdown({"DDIM": {5: 3.0, 20: 1.5}, "other": {5: 2.0}}, floor=0.5,
                           samplers={"DDIM": (1.0, 0.0)})
    lines = text.splitlines()
    assert lines[0] == "| sampler (gam, mu) | 5 steps | 20 steps |"
    assert lines[2] == "| DDIM (1.0, 0.0) | 3.00 | 1.50 |"
    assert lines[3] == "| other | 2.00 |  |"
    assert lines[4].startswith("| real vs real (floor) | 0.50 | 0.50")


def test_plot_helpers_return_figures(tiny_model):
    import matplotlib.pyplot as plt
    figs = [
        tp.noise_levels(torch.zeros(1, 8, 8), [0.1, 1.0]),
        tp.std_vs_sigma([0.1, 1, 10], [0.7, 1.2, 10], [0.7, 0.9, 1.0], 0.7),
        tp.sigma_distribution({"a": torch.rand(100) + 0.01}),
        tp.ema_weights([1, 2, 3], [0.2, 0.3, 0.4], [0.999, 0.998, 0.997], [0.8, 0.2, 0.1], 0.999),
        tp.loss_curve([(5, 1.0), (10, 0.5)]),
        tp.samples_side_by_side({"a": torch.zeros(4, 1, 8, 8), "b": torch.zeros(4, 1, 8, 8)}),
        sp.plot_sampler_rows({"x": torch.zeros(3, 1, 8, 8)}),
        sp.plot_fid_vs_steps({"DDIM": {5: 3.0, 10: 2.0}}, floor=1.0, n=16),
    ]
    for f in figs:
        assert isinstance(f, matplotlib.figure.Figure)
        plt.close(f)
    with pytest.raises(ValueError, match="history is empty"):
        tp.loss_curve([])


def _load_bench():
    spec = importlib.util.spec_from_file_location("train_throughput", ROOT / "bench" / "train_throughput.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_torch_ema_stand_in_follows_the_warmed_up_rule():
    pytest.importorskip("smalldiffusion")
    bench = _load_bench()
    p = torch.nn.Parameter(torch.ones(3))
    ema = bench.TorchEmaStandIn([p], decay=0.999)
    with torch.no_grad():
        p.zero_()
    ema.update()                              # decay min(0.999, 2/11)
    torch.testing.assert_close(ema.shadow[0], torch.full((3,), 2 / 11))


def test_benchmark_runs_end_to_end(tmp_path):
    pytest.importorskip("smalldiffusion")
    pytest.importorskip("accelerate")
    pytest.importorskip("torchvision.datasets")    # the baseline's data pipeline (not the CI stub)
    bench = _load_bench()
    out = tmp_path / "b.json"
    assert bench.main(["--batch-size", "4", "--steps", "1", "--warmup", "1", "--repeats", "1",
                       "--sample-batch", "2", "--sample-steps", "2", "--sample-repeats", "1",
                       "--threads", "1", "--device", "cpu", "--json", str(out),
                       "--md", str(tmp_path / "R.md"), "--title", "CPU, 1 thread"]) == 0
    results = json.loads(out.read_text())
    assert results["achieved_gflops"] > 0 and results["step_flops_per_image"] > 1e8
    text = (tmp_path / "R.md").read_text()
    assert "## CPU, 1 thread" in text and "| ours (" in text and "GFLOP per image" in text
    assert bench.main(["--batch-size", "4", "--steps", "1", "--warmup", "0", "--repeats", "1", "--no-sampling",
                       "--no-fp32", "--threads", "1", "--device", "cpu", "--md", str(tmp_path / "R.md"),
                       "--title", "CPU, 1 thread"]) == 0
    assert (tmp_path / "R.md").read_text().count("## CPU, 1 thread") == 1     # the section is replaced


def test_attention_benchmark_runs_and_writes_its_table(tmp_path):
    spec = importlib.util.spec_from_file_location("attention_speed", ROOT / "bench" / "attention_speed.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out, md = tmp_path / "a.json", tmp_path / "a.md"
    assert mod.main(["--threads", "1", "--repeats", "1", "--shapes", "2x16x8", "--json", str(out), "--md", str(md)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert len(rows) == 4 and all(r["ratio"] > 0 for r in rows)            # bf16/fp32 x forward/backward
    assert {r["dtype"] for r in rows} == {"bfloat16", "float32"}
    assert "| 2, 16, 8 | bfloat16 | forward + backward |" in md.read_text()
    with pytest.raises(ValueError, match="BxNxD"):
        mod.main(["--shapes", "2x16"])


def test_throughput_report_says_which_row_answers_what():
    pytest.importorskip("smalldiffusion")
    bench = _load_bench()
    text = bench.which_row({"ours": [60, 62], "ours-fp32": [30, 31], "baseline": [30, 30]})
    assert "ours-fp32 against the baseline, both fp32: 1.02x" in text
    assert "ours against ours-fp32, the same code: 2.00x" in text and "(2.03x)" in text
    assert bench.which_row({"ours": [1.0], "baseline": [1.0]}) == ""     # no fp32 row to compare


def _branch_study(scores):
    arm = lambda sha, batch, end: dict(weights_sha256=sha, start_step=100, batch_size=batch,
                                       lr_curve=[(100, 0.0), (100 + end // 2, 1e-3), (100 + end, 0.0)])
    return dict(settings=dict(n=1000), floor=dict(fid_mean=3.0), shipped=dict(weights_sha256="s0"),
                arms={"a": arm("a1", 128, 20), "b": arm("b1", 256, 10)}, scores=scores)


def test_branch_scores_pick_the_winner_by_the_emas_mean_and_need_two_seeds():
    import matplotlib.pyplot as plt
    from smallunet.book.plotting.training import branch_study
    from smallunet.book.results import branch_scores
    s = lambda v: dict(fid=v)
    study = _branch_study({"s0 | ema | seed 0": s(35.0), "s0 | ema | seed 1": s(36.0),
                           "a1 | ema | seed 0": s(30.0), "a1 | ema | seed 1": s(32.0), "a1 | model | seed 0": s(40.0),
                           "b1 | ema | seed 0": s(31.0), "b1 | ema | seed 1": s(31.5),
                           "b1 | model | seed 0": s(25.0)})
    got = branch_scores(study)
    assert got["winner"] == "a"                     # EMA means 31.0 < 31.25, though b's raw weights score lower
    assert got["rows"]["a"] == dict(ema=[30.0, 32.0], ema_mean=31.0, ema_std=1.0, raw=40.0)
    assert got["rows"]["shipped"]["raw"] is None and list(got["rows"]) == ["shipped", "a", "b"]
    del study["scores"]["a1 | ema | seed 1"]         # one seed: no spread, not ranked
    got = branch_scores(study)
    assert "a" not in got["rows"] and got["winner"] == "b"
    fig = branch_study(study, got)
    assert isinstance(fig, matplotlib.figure.Figure)
    a_line, b_line = fig.axes[0].lines                # 20 steps of 128 and 10 of 256: the same images
    assert list(a_line.get_xdata()) == [0, 1.28, 2.56] and list(b_line.get_xdata()) == [0, 1.28, 2.56]
    plt.close(fig)
