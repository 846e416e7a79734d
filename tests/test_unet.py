"""The U-Net wing (validation.unet): frozen noise, the network, and the memorisation pipeline."""
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from validation.unet import experiment, torch_module
from validation.unet.network import build_unet, parameter_count
from validation.unet.training import FrozenNoise, Trainer, noisy

# The MNIST test split of shared/ (beside the checkout, as CI lays it; else the workplace's copy).
MNIST = next((c for c in (Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist",
                          Path("/work/shared/data/mnist")) if c.exists()), Path("/work/shared/data/mnist"))
needs_mnist = pytest.mark.skipif(not (MNIST / "t10k-images-idx3-ubyte.gz").exists(),
                                 reason="MNIST test split not available")


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_frozen_noise_holds_exactly_m_draws_per_image_reproducibly():
    a = FrozenNoise.draw(n=5, m=3, d=7, seed=11)
    assert a.t.shape == (5, 3) and a.z.shape == (5, 3, 7) and (a.n, a.m) == (5, 3)
    assert np.all((a.t >= 0.01) & (a.t <= 3.0))
    b = FrozenNoise.draw(n=5, m=3, d=7, seed=11)
    assert np.array_equal(a.t, b.t) and np.array_equal(a.z, b.z)
    c = FrozenNoise.draw(n=5, m=3, d=7, seed=12)
    assert not np.array_equal(a.z, c.z)
    with pytest.raises(ValueError, match="finite integer m"):
        FrozenNoise.draw(n=5, m=math.inf, d=7, seed=0)


def test_training_minibatches_use_only_the_frozen_pairs():
    X = np.random.default_rng(0).standard_normal((4, 49))
    tr = Trainer(build_unet(4, levels=2), X, (7, 7), m=2, seed=3, batch=64)
    pairs = {(round(float(t), 12), round(float(z[0]), 12)) for t, z in
             zip(tr.frozen.t.reshape(-1), tr.frozen.z.reshape(8, 49))}
    for _ in range(3):
        y, t, z = tr._minibatch()
        assert {(round(float(a), 12), round(float(b[0]), 12)) for a, b in zip(t, z)} <= pairs
        # each noisy input is a_t x_i + sqrt(Δ_t) z for one of the training images
        resid = [min(np.abs(noisy(X[i:i + 1], t[k:k + 1], z[k:k + 1]) - y[k]).max() for i in range(4))
                 for k in range(len(y))]
        assert max(resid) < 1e-12
    fresh = Trainer(build_unet(4, levels=2), X, (7, 7), m="inf", seed=3, batch=64)
    assert fresh.frozen is None
    _, t1, z1 = fresh._minibatch()
    _, _, z2 = fresh._minibatch()
    assert not np.array_equal(z1, z2) and len(set(np.round(t1, 12))) == 64


def test_unet_output_shape_time_conditioning_and_size():
    torch.manual_seed(0)
    for shape, levels in (((7, 7), 2), ((14, 14), 3), ((16, 12), 3)):
        net = build_unet(4, levels=levels)
        y = torch.randn(5, 1, *shape)
        with torch.no_grad():
            a = net(y, torch.full((5,), 0.1))
            b = net(y, torch.full((5,), 1.0))
            c = net(y, torch.full((5,), 0.1))
        assert a.shape == y.shape
        assert torch.equal(a, c)                                  # deterministic
        assert (a - b).abs().max() > 1e-3 * a.abs().max()         # depends on t
    sizes = [parameter_count(build_unet(w, levels=2)) for w in (4, 10, 24)]
    assert sizes[0] < sizes[1] < sizes[2] and sizes[2] / sizes[0] >= 30   # the grid's widths span >= 30x
    with pytest.raises(ValueError, match="width"):
        build_unet(0)


def test_torch_is_optional_and_its_absence_is_explained(monkeypatch):
    code = ("import sys, validation, validation.unet, validation.cli, validation.cli.unet, validation.unet.plots; "
            "assert 'torch' not in sys.modules, 'torch imported eagerly'")
    subprocess.run([sys.executable, "-c", code], check=True)
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ImportError, match=r"pip install -e '\.\[unet\]'"):
        torch_module()


@needs_mnist
def test_pipeline_detects_memorisation_of_a_few_images():
    """m = inf on 3 images until the samples copy them: memorised fraction near 1; at
    initialisation the same network memorises nothing."""
    images = experiment._pool(str(MNIST), 4)
    train, _ = experiment.draw_images(images, 3, 10, seed=0)
    X = images.X[train]
    torch.manual_seed(0)
    net = build_unet(8, levels=2)
    budget = experiment.Budget(steps=1, mem_checks=(1,), sampler_steps=40)
    at_init = experiment.sample_and_measure(net, images, X, budget, seed=0, samples=100)
    assert at_init["fraction"] == 0.0
    Trainer(net, X, images.image_shape, m=math.inf, seed=0, batch=32, lr=2e-3).train(600)
    trained = experiment.sample_and_measure(net, images, X, budget, seed=0, samples=100)
    assert trained["fraction"] >= 0.9, trained["fraction"]
    assert trained["median_ratio"] < 0.2


@needs_mnist
def test_command_runs_resumes_and_collects(tmp_path, capsys):
    from validation.cli import main

    argv = ["unet", "--data", str(MNIST), "--out", str(tmp_path), "--n", "4", "--m", "2", "--widths", "4",
            "--seeds", "1", "--steps", "2", "--no-theory"]
    assert main(argv) == 0
    cells = sorted(p.name for p in (tmp_path / "cells").iterdir())
    assert cells == ["mnist_n4_m2_W4_s0.json", "mnist_n4_m2_W4_s0.npz"]
    for name in ("unet.csv", "unet.json", "unet_by_cell.csv", "unet.md", "memorization_mnist.png",
                 "losses_mnist.png", "training_mnist.png", "samples_mnist.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    first = (tmp_path / "unet.csv").read_text()
    assert main(argv) == 0                               # resumes: the cell is not run again
    assert "1 of 1 cells already done" in capsys.readouterr().out
    assert (tmp_path / "unet.csv").read_text() == first
    assert main(argv + ["--collect"]) == 0
    with pytest.raises(SystemExit):                      # argument errors before any work
        main(["unet", "--data", str(MNIST), "--out", str(tmp_path), "--workers", "2"])
    assert "--workers only applies to --scheduler local" in capsys.readouterr().err
