"""U-Net scores trained by DSM on images: the network (:mod:`~validation.unet.network`),
frozen-noise training and losses (:mod:`~validation.unet.training`), one grid cell and the
grid (:mod:`~validation.unet.experiment`) and its figures (:mod:`~validation.unet.plots`).

Needs PyTorch, an optional extra: ``pip install -e '.[unet]'``.  Only this wing imports it,
lazily, through :func:`torch_module`.
"""
from __future__ import annotations

INSTALL_HINT = "the U-Net experiments need PyTorch: pip install -e '.[unet]' (a CPU build, torch==2.13.0)"


def torch_module():
    """``torch``, imported on first use; ``ImportError`` with the install command if missing."""
    try:
        import torch
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc
    return torch
