"""An exponential moving average of a network's weights (Polyak averaging), for its outputs.

Trained at a constant learning rate on noisy images, a network's weights keep moving around
the solution by the size of Adam's steps: each epoch's weights carry their own last batches'
noise. The average over the last steps does not (Polyak & Juditsky 1992; SWA, Izmailov et
al. 2018). A trainer keeps training the network itself and writes the average as its output.

The average of step ``t`` is ``a_t = d a_{t-1} + (1 - d) w_t`` with ``d = exp(-1 / steps)``:
a weight written ``steps`` optimiser steps ago counts ``1/e`` as much as the newest. It
starts at the weights of its first update. Integer buffers are copied, not averaged.
Every rank of a run holds the same weights after each step, so every rank's average is the
same and nothing is communicated.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
from torch import nn

__all__ = ["WeightAverage"]


class WeightAverage:
    """Moving average of ``module``'s floating-point state (parameters and buffers).

    ``steps``: the average's memory in optimiser steps (``d = exp(-1 / steps)``; > 0).
    """

    def __init__(self, steps: float) -> None:
        if not steps > 0:
            raise ValueError(f"the average's memory must be positive, got {steps} steps")
        self.decay = math.exp(-1.0 / float(steps))
        self.average: dict[str, torch.Tensor] | None = None
        self.updates = 0

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        """Fold ``module``'s current weights into the average (after an optimiser step)."""
        state = module.state_dict()
        if self.average is None:
            self.average = {k: v.detach().clone() for k, v in state.items()}
        else:
            for k, v in state.items():
                a = self.average[k]
                if a.is_floating_point():
                    a.mul_(self.decay).add_(v.detach().to(a.dtype), alpha=1.0 - self.decay)
                else:
                    a.copy_(v)
        self.updates += 1

    def averaged_state(self, module: nn.Module) -> dict[str, torch.Tensor]:
        """``module``'s ``state_dict`` with the averaged weights (its own before the first update)."""
        state = module.state_dict()
        if self.average is None:
            return {k: v.detach().clone() for k, v in state.items()}
        return {k: self.average[k].clone() for k in state}

    @contextlib.contextmanager
    def applied(self, module: nn.Module) -> Iterator[nn.Module]:
        """``module`` with the averaged weights inside the block, its own restored after."""
        if self.average is None:
            yield module
            return
        own = {k: v.detach().clone() for k, v in module.state_dict().items()}
        module.load_state_dict(self.average)
        try:
            yield module
        finally:
            module.load_state_dict(own)

    def state_dict(self) -> dict:
        """Tensors and numbers only (checkpoints load without executing code)."""
        return {"updates": self.updates, "average": self.average}

    def load_state_dict(self, state: dict) -> None:
        """The average and its count; the memory stays this object's (a run resumed under
        another number of ranks takes other steps per epoch)."""
        self.updates = int(state["updates"])
        average = state.get("average")
        self.average = None if average is None else {k: v.clone() for k, v in average.items()}
