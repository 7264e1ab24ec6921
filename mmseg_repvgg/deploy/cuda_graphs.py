"""The ``*_graph`` forms: a fast GPU finishes many of PSPNet's kernels
sooner than Python launches the next, so one forward is replayed at once."""
from typing import Callable, List, Optional, Tuple

import torch
from torch import Tensor

#: Calls before capture: cuDNN's autotuning and lazy init stay outside it.
WARMUP_CALLS = 2


class GraphedCall:
    """``fn`` (pure, of one CUDA tensor, no host sync) as a CUDA graph."""

    def __init__(self,
                 fn: Callable[[Tensor], Tensor],
                 notes: Optional[List[str]] = None,
                 warmup: int = WARMUP_CALLS):
        self.fn = fn
        self.notes = notes if notes is not None else []
        self.warmup = warmup
        self.captures = 0
        self._key: Optional[Tuple] = None
        self._graph = self._input = self._output = None

    def _capture(self, x: Tensor) -> None:
        # Drop the old graph first: its memory pool is freed for the new.
        self._graph = self._input = self._output = None
        static = x.clone()
        side = torch.cuda.Stream(device=x.device)
        side.wait_stream(torch.cuda.current_stream(x.device))
        with torch.cuda.stream(side):
            for _ in range(self.warmup):
                self.fn(static)
        torch.cuda.current_stream(x.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            output = self.fn(static)
        self._graph, self._input, self._output = graph, static, output
        self._key = (tuple(x.shape), x.dtype, x.device)
        self.captures += 1
        again = (' (the input shape changed: captured again)'
                 if self.captures > 1 else '')
        self.notes.append(
            f'CUDA graph captured for input {tuple(x.shape)}{again}')

    def __call__(self, x: Tensor) -> Tensor:
        if not x.is_cuda:
            raise ValueError('a CUDA graph form takes CUDA tensors')
        # The captured input, an inference tensor, is updated in place.
        with torch.inference_mode():
            if (tuple(x.shape), x.dtype, x.device) != self._key:
                self._capture(x)
            self._input.copy_(x)
            self._graph.replay()
            # The captured output is overwritten by the next replay.
            return self._output.clone()
