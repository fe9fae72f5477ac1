"""The MNIST networks of Chen et al. 2018, Table 1, as torch modules.

``ODENet``: downsampling stem -> one ODE block over t in [0, 1] (the state at t = 1) -> head.
``ResNet``: the same stem -> ``n_blocks`` pre-activation residual blocks -> the same head.
The parameter names (state_dict keys), shapes and initial values are those of
``odebench_tasks.mnist.params``; copy them in with ``load_params``.
"""

from __future__ import annotations

import torch
from torch import nn

from odebench_tasks._common.torch_weights import load_params
from .params import N_CLASSES, norm_groups, validate

__all__ = ["norm", "downsampling", "ODEFunc", "ResBlock", "Head", "ODENet", "ResNet", "build", "load_params"]


def norm(dim: int) -> nn.GroupNorm:
    """GroupNorm(min(32, dim), dim), the reference's normalisation everywhere."""
    return nn.GroupNorm(norm_groups(dim), dim)


def downsampling(width: int) -> nn.Sequential:
    """1x28x28 -> width x 26 x 26 -> 13 x 13 -> 6 x 6."""
    return nn.Sequential(
        nn.Conv2d(1, width, 3, 1), norm(width), nn.ReLU(),
        nn.Conv2d(width, width, 4, 2, 1), norm(width), nn.ReLU(),
        nn.Conv2d(width, width, 4, 2, 1),
    )


def _concat_time(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """[t, x] along channels: the reference's ConcatConv2d puts a constant t channel first."""
    return torch.cat([torch.ones_like(x[:, :1]) * t.to(x.dtype), x], dim=1)


class ODEFunc(nn.Module):
    """dx/dt = GN -> ReLU -> ConcatConv -> GN -> ReLU -> ConcatConv -> GN, each conv (W+1)->W."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm1 = norm(width)
        self.conv1 = nn.Conv2d(width + 1, width, 3, 1, 1)
        self.norm2 = norm(width)
        self.conv2 = nn.Conv2d(width + 1, width, 3, 1, 1)
        self.norm3 = norm(width)

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(_concat_time(t, torch.relu(self.norm1(x))))
        out = self.conv2(_concat_time(t, torch.relu(self.norm2(out))))
        return self.norm3(out)


class ResBlock(nn.Module):
    """Pre-activation residual block: x + conv2(relu(norm2(conv1(relu(norm1(x))))))."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm1 = norm(width)
        self.conv1 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.norm2 = norm(width)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(torch.relu(self.norm1(x)))
        out = self.conv2(torch.relu(self.norm2(out)))
        return out + x


class Head(nn.Module):
    """norm -> ReLU -> global average pool -> Linear(width, 10): the logits."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm = norm(width)
        self.fc = nn.Linear(width, N_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.norm(x)).mean(dim=(2, 3)))


class ODENet(nn.Module):
    """Stem -> x(1) of dx/dt = odefunc(t, x), x(0) = features -> head."""

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        width, _ = validate("odenet", width, 1)
        self.downsample = downsampling(width)
        self.odefunc = ODEFunc(width)
        self.head = Head(width)

    def forward(self, x: torch.Tensor, odeint) -> torch.Tensor:
        """Logits [n, 10]; ``odeint(func, y0, t)`` is the backend's, solver and tolerances bound."""
        h = self.downsample(x)
        times = torch.tensor([0.0, 1.0], dtype=h.dtype, device=h.device)
        return self.head(odeint(self.odefunc, h, times)[-1])


class ResNet(nn.Module):
    """Stem -> ``n_blocks`` residual blocks -> head: the paper's baseline (no ODE solve)."""

    def __init__(self, width: int = 64, n_blocks: int = 6) -> None:
        super().__init__()
        width, n_blocks = validate("resnet", width, n_blocks)
        self.downsample = downsampling(width)
        self.blocks = nn.Sequential(*(ResBlock(width) for _ in range(n_blocks)))
        self.head = Head(width)

    def forward(self, x: torch.Tensor, odeint=None) -> torch.Tensor:
        """Logits [n, 10]; ``odeint`` is accepted for a uniform call and ignored."""
        return self.head(self.blocks(self.downsample(x)))


def build(model: str, width: int = 64, n_blocks: int = 6) -> nn.Module:
    """``ODENet(width)`` or ``ResNet(width, n_blocks)`` (torch's own init; see load_params)."""
    validate(model, width, n_blocks)
    return ODENet(width) if model == "odenet" else ResNet(width, n_blocks)
