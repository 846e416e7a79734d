"""DSM training of a U-Net noise predictor on ``n`` images with ``m`` frozen ``(t, z)`` draws each.

Forward process (MODEL.md): ``y = a_t x + sqrt(Δ_t) z``, ``a_t = e^{-t}``,
``Δ_t = 1 - e^{-2t}``.  The network predicts the noise, ``ε̂(y, t) = -sqrt(Δ_t) s(y, t)``, and
the DSM loss of one pair is MODEL.md's ``(1/d) ‖sqrt(Δ_t) s(y) + z‖² = (1/d) ‖z - ε̂(y, t)‖²``
(``d`` pixels; equal weight at every time).

Time sampling: ``log t`` uniform on ``[t_lo, t_hi]`` (default ``[0.01, 3]``), the continuous
version of the geometric grid of times on which the random-features scores of
``dsm-curves real`` are trained (``Config.mem_times``), and the range the samplers run over.

Frozen noise (:class:`FrozenNoise`): image ``i`` gets exactly ``m`` pairs ``(t_ij, z_ij)``,
drawn once from ``SeedSequence([seed, 1])`` and reused at every step; an Adam step takes a
minibatch of ``(i, j)`` pairs uniformly from the ``n m`` pairs.  ``m = inf`` draws a fresh
``(t, z)`` for every image of every minibatch (the images themselves uniformly).
"""
from __future__ import annotations

import collections
import math
import time
from dataclasses import dataclass, field

import numpy as np

from validation.images.sampling import a_delta
from validation.simulation.problem import parse_m

from . import torch_module

#: Default time range of training (and of the samplers).
T_LO, T_HI = 0.01, 3.0


def log_uniform_times(rng: np.random.Generator, size, t_lo: float = T_LO, t_hi: float = T_HI) -> np.ndarray:
    """Times with ``log t`` uniform on ``[log t_lo, log t_hi]``."""
    return np.exp(rng.uniform(math.log(t_lo), math.log(t_hi), size=size))


@dataclass(frozen=True)
class FrozenNoise:
    """The ``m`` frozen draws of each of ``n`` images: ``t`` (``n x m``) and ``z`` (``n x m x d``).

    ``FrozenNoise.draw(n, m, d, seed)`` is a deterministic function of its arguments.
    """

    t: np.ndarray = field(repr=False)
    z: np.ndarray = field(repr=False)

    @classmethod
    def draw(cls, n: int, m: int, d: int, seed: int, t_lo: float = T_LO, t_hi: float = T_HI) -> FrozenNoise:
        if not (isinstance(m, (int, np.integer)) and m >= 1):
            raise ValueError(f"frozen noise needs a finite integer m >= 1, got {m!r}")
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), 1]))
        t = log_uniform_times(rng, (n, m), t_lo, t_hi)
        z = rng.standard_normal((n, m, d))
        return cls(t=t, z=z)

    @property
    def n(self) -> int:
        return self.t.shape[0]

    @property
    def m(self) -> int:
        return self.t.shape[1]


def noisy(X: np.ndarray, t: np.ndarray, z: np.ndarray) -> np.ndarray:
    """``a_t x + sqrt(Δ_t) z`` row by row (``t`` one time per row)."""
    a = np.exp(-t)
    delta = -np.expm1(-2.0 * t)
    return a[:, None] * X + np.sqrt(delta)[:, None] * z


@dataclass
class TrainLog:
    """Training trace: steps, the mean minibatch loss over each window, and seconds."""

    steps: list = field(default_factory=list)
    loss: list = field(default_factory=list)
    seconds: float = 0.0


class Trainer:
    """Adam on the DSM loss of ``net`` for training images ``X`` (``n x d``) of shape ``image_shape``.

    ``m`` is an integer ``>= 1`` or ``inf`` (:func:`validation.simulation.problem.parse_m`);
    ``seed`` fixes the frozen draws, the minibatch order and the fresh noise of ``m = inf``.
    """

    def __init__(self, net, X: np.ndarray, image_shape, *, m, seed: int, batch: int = 32, lr: float = 1e-3,
                 t_lo: float = T_LO, t_hi: float = T_HI):
        torch = torch_module()
        self.torch = torch
        self.net = net
        self.X = np.asarray(X, dtype=np.float64)
        self.shape = tuple(image_shape)
        if self.X.ndim != 2 or self.X.shape[1] != math.prod(self.shape):
            raise ValueError(f"X must be (n, {math.prod(self.shape)}), got shape {self.X.shape}")
        self.m = parse_m(m)
        self.batch, self.t_lo, self.t_hi = int(batch), t_lo, t_hi
        n, d = self.X.shape
        self.frozen = None if math.isinf(self.m) else FrozenNoise.draw(n, int(self.m), d, seed, t_lo, t_hi)
        self.rng = np.random.default_rng(np.random.SeedSequence([int(seed), 2]))
        self.opt = torch.optim.Adam(net.parameters(), lr=lr)
        self.step_count = 0
        self.log = TrainLog()
        self._window = [0.0, 0]  # loss sum and count of the current logging window
        self.recent = collections.deque(maxlen=200)  # the last minibatch losses

    def _minibatch(self):
        n = self.X.shape[0]
        if self.frozen is None:
            i = self.rng.integers(n, size=self.batch)
            t = log_uniform_times(self.rng, self.batch, self.t_lo, self.t_hi)
            z = self.rng.standard_normal((self.batch, self.X.shape[1]))
        else:
            k = self.rng.integers(n * self.frozen.m, size=self.batch)
            i, j = np.divmod(k, self.frozen.m)
            t, z = self.frozen.t[i, j], self.frozen.z[i, j]
        return noisy(self.X[i], t, z), t, z

    def train(self, steps: int, *, log_every: int = 100) -> TrainLog:
        """``steps`` Adam steps; the mean minibatch loss of every ``log_every`` steps is logged."""
        torch = self.torch
        self.net.train()
        start = time.perf_counter()
        acc, count = self._window
        for _ in range(int(steps)):
            y, t, z = self._minibatch()
            y = torch.as_tensor(y, dtype=torch.float32).reshape(-1, 1, *self.shape)
            z = torch.as_tensor(z, dtype=torch.float32).reshape(-1, 1, *self.shape)
            loss = ((self.net(y, torch.as_tensor(t, dtype=torch.float32)) - z) ** 2).mean()
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            self.step_count += 1
            value = float(loss.detach())
            acc += value
            self.recent.append(value)
            count += 1
            if count == log_every:
                self.log.steps.append(self.step_count)
                self.log.loss.append(acc / count)
                acc, count = 0.0, 0
        self._window = [acc, count]
        if not all(math.isfinite(v) for v in self.log.loss):
            raise FloatingPointError(f"training diverged: losses {self.log.loss[-5:]}")
        self.log.seconds += time.perf_counter() - start
        return self.log


def predict_noise(net, Y: np.ndarray, t, image_shape, batch: int = 2048) -> np.ndarray:
    """``ε̂(y, t)`` for the rows of ``Y`` (``k x d``) at one time ``t`` or one time per row."""
    torch = torch_module()
    Y = np.asarray(Y, dtype=np.float64)
    t = np.array(np.broadcast_to(np.asarray(t, dtype=np.float64), (Y.shape[0],)))
    net.eval()
    out = []
    with torch.no_grad():
        for s in range(0, Y.shape[0], batch):
            y = torch.as_tensor(Y[s:s + batch], dtype=torch.float32).reshape(-1, 1, *image_shape)
            out.append(net(y, torch.as_tensor(t[s:s + batch], dtype=torch.float32)).reshape(len(y), -1).numpy())
    return np.concatenate(out).astype(np.float64)


class UNetScore:
    """The score ``s(y, t) = -ε̂(y, t) / sqrt(Δ_t)`` of a trained network, in the form the
    samplers of :mod:`validation.images.sampling` take (``(k, d)`` arrays in and out)."""

    def __init__(self, net, image_shape):
        self.net = net
        self.image_shape = tuple(image_shape)
        self.d = math.prod(self.image_shape)

    def __call__(self, Y: np.ndarray, t: float) -> np.ndarray:
        _, delta = a_delta(float(t))
        return -predict_noise(self.net, Y, t, self.image_shape) / math.sqrt(delta)


def dsm_loss(net, X: np.ndarray, t: float, image_shape, rng: np.random.Generator, draws: int = 1) -> tuple[float, float]:
    """DSM loss ``(1/d) ‖z - ε̂(a_t x + sqrt(Δ_t) z, t)‖²`` at time ``t``, averaged over the rows of
    ``X`` and ``draws`` fresh noises each: ``(mean, standard error over the rows)``."""
    X = np.repeat(np.asarray(X, dtype=np.float64), int(draws), axis=0)
    z = rng.standard_normal(X.shape)
    tt = np.full(X.shape[0], float(t))
    err = np.mean((predict_noise(net, noisy(X, tt, z), tt, image_shape) - z) ** 2, axis=1)
    per_row = err.reshape(-1, int(draws)).mean(axis=1)
    se = float(per_row.std(ddof=1) / math.sqrt(len(per_row))) if len(per_row) > 1 else math.inf
    return float(per_row.mean()), se


def frozen_loss(net, X: np.ndarray, frozen: FrozenNoise, image_shape) -> float:
    """The training objective on the frozen pairs: mean DSM loss over all ``n m`` ``(t_ij, z_ij)``."""
    n, m = frozen.t.shape
    Xr = np.repeat(np.asarray(X, dtype=np.float64), m, axis=0)
    t = frozen.t.reshape(-1)
    z = frozen.z.reshape(n * m, -1)
    return float(np.mean((predict_noise(net, noisy(Xr, t, z), t, image_shape) - z) ** 2))
