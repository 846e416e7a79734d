"""A time-conditioned U-Net noise predictor in the DDPM layout (Ho, Jain, Abbeel 2020).

``UNet(W)`` maps a batch of noisy images ``y`` (``B x 1 x H x W_img``) and diffusion times
``t`` (``B``) to the predicted noise ``ε̂(y, t)``; the score is ``s = -ε̂ / sqrt(Δ_t)``
(MODEL.md: DSM trains ``sqrt(Δ_t) s ≈ -z``).  Layout, for a base width ``W``:

* input padded with zeros to a multiple of 4 on each side (14 x 14 -> 16 x 16), output
  cropped back, so the loss sees only real pixels;
* time embedding: sinusoidal features of ``τ = 100 (log t + 5)`` (``log t`` because DSM times
  are spread over decades, and ``+5`` keeps ``τ > 0`` down to ``t ≈ 0.007``), then
  ``Linear -> SiLU -> Linear`` to ``4W`` channels, added inside every residual block;
* ``conv 3x3`` to ``W`` channels; down path with channels ``(W, 2W, 2W)`` at resolutions
  ``(1, 1/2, 1/4)``: one residual block per level, then a stride-2 conv; a middle of two
  residual blocks; up path mirroring it, each level a residual block on the concatenation
  with the skip, then nearest-neighbour upsampling and a conv;
* residual block: ``GroupNorm -> SiLU -> conv -> GroupNorm -> time scale and shift -> SiLU ->
  conv``, plus the input (a 1x1 conv when the channels change).  The time enters as
  ``h (1 + scale(t)) + shift(t)`` after the second norm (the "scale-shift norm" of Nichol and
  Dhariwal 2021, *Improved DDPM*), not as DDPM's bias before it: a GroupNorm removes a
  per-channel bias from any group of one channel, and at the small widths used here that
  left the network blind to ``t``.  Groups hold at least 4 channels.

No self-attention (the DDPM model has one at 16 x 16): at these sizes it is a small part of
the parameters and its cost on one CPU core is not worth it.  PyTorch's default
initialisation throughout (the final conv is not zeroed, so the network at initialisation
already depends on ``t``).

torch is imported lazily (:func:`validation.unet.torch_module`): ``import validation`` never
needs it.
"""
from __future__ import annotations

import math

from . import torch_module


def _groups(channels: int) -> int:
    """Groups of a GroupNorm over ``channels``: the largest of 8, 4, 2, 1 that divides it and
    leaves at least 4 channels per group (one channel per group would be an instance norm)."""
    return next(g for g in (8, 4, 2, 1) if channels % g == 0 and channels // g >= 4 or g == 1)


def build_unet(width: int, *, levels: int = 3):
    """A fresh ``UNet`` of base width ``width`` (see the module docstring); ``levels`` resolutions."""
    torch = torch_module()
    nn = torch.nn
    F = torch.nn.functional
    if isinstance(width, bool) or int(width) != width or width < 1:
        raise ValueError(f"width must be an integer >= 1, got {width!r}")
    width = int(width)

    class ResBlock(nn.Module):
        def __init__(self, cin, cout, temb):
            super().__init__()
            self.norm1 = nn.GroupNorm(_groups(cin), cin)
            self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
            self.temb = nn.Linear(temb, 2 * cout)
            self.norm2 = nn.GroupNorm(_groups(cout), cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
            self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

        def forward(self, x, emb):
            h = self.conv1(F.silu(self.norm1(x)))
            scale, shift = self.temb(emb)[:, :, None, None].chunk(2, dim=1)
            h = self.conv2(F.silu(self.norm2(h) * (1 + scale) + shift))
            return h + self.skip(x)

    class UNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.width = width
            chans = [width * (1 if k == 0 else 2) for k in range(levels)]
            self.chans = chans
            temb = 4 * width
            self.time_mlp = nn.Sequential(nn.Linear(width, temb), nn.SiLU(), nn.Linear(temb, temb))
            self.conv_in = nn.Conv2d(1, width, 3, padding=1)
            self.down = nn.ModuleList()
            self.downsample = nn.ModuleList()
            cin = width
            for k, c in enumerate(chans):
                self.down.append(ResBlock(cin, c, temb))
                cin = c
                if k + 1 < levels:
                    self.downsample.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
            self.mid = nn.ModuleList([ResBlock(cin, cin, temb), ResBlock(cin, cin, temb)])
            self.up = nn.ModuleList()
            self.upsample = nn.ModuleList()
            for k in reversed(range(levels)):
                c = chans[k]
                self.up.append(ResBlock(cin + c, c, temb))
                cin = c
                if k > 0:
                    self.upsample.append(nn.Conv2d(c, chans[k - 1], 3, padding=1))
                    cin = chans[k - 1]
            self.norm_out = nn.GroupNorm(_groups(cin), cin)
            self.conv_out = nn.Conv2d(cin, 1, 3, padding=1)
            self.pad_to = 2 ** (levels - 1)

        def embed(self, t):
            half = self.width // 2
            tau = 100.0 * (torch.log(t) + 5.0)
            freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=t.dtype) / max(half, 1))
            args = tau[:, None] * freqs[None, :]
            emb = torch.cat([torch.sin(args), torch.cos(args)], dim=1)
            if emb.shape[1] < self.width:  # odd width: one zero column
                emb = F.pad(emb, (0, self.width - emb.shape[1]))
            return self.time_mlp(emb)

        def forward(self, y, t):
            H, Wd = y.shape[-2:]
            ph, pw = (-H) % self.pad_to, (-Wd) % self.pad_to
            x = F.pad(y, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
            emb = self.embed(t)
            h = self.conv_in(x)
            skips = []
            for k, block in enumerate(self.down):
                h = block(h, emb)
                skips.append(h)
                if k < len(self.downsample):
                    h = self.downsample[k](h)
            for block in self.mid:
                h = block(h, emb)
            for k, block in enumerate(self.up):
                h = block(torch.cat([h, skips.pop()], dim=1), emb)
                if k < len(self.upsample):
                    h = self.upsample[k](F.interpolate(h, scale_factor=2, mode="nearest"))
            out = self.conv_out(F.silu(self.norm_out(h)))
            return out[..., ph // 2:ph // 2 + H, pw // 2:pw // 2 + Wd]

    return UNet()


def parameter_count(net) -> int:
    """Number of trainable parameters of ``net``."""
    return int(sum(p.numel() for p in net.parameters() if p.requires_grad))
