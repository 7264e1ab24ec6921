"""The ``*_graph`` forms: an eager form replayed as a CUDA graph.

At batch 1 a fast GPU finishes many of PSPNet's kernels sooner than Python
launches the next; a graph replays one forward's kernels with one launch.
torch's API, used as its docs show (warm-up on a side stream, one capture,
copy the input in and replay); another input shape captures again, noted.
"""
from typing import Callable, List, Optional, Tuple

import torch
from torch import Tensor

#: Calls before the capture: cuDNN's autotuning (``cudnn.benchmark``) and
#: lazy initialization must happen outside the graph.
WARMUP_CALLS = 2


class GraphedCall:
    """``fn`` replayed as a CUDA graph.

    Args:
        fn (callable): A pure function of one CUDA tensor that does not
            synchronize with the host (no ``.item()``).
        notes (list[str], optional): Receives one line per capture.
        warmup (int): Calls before each capture.
    """

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
        # An inference tensor (the captured input) is updated in place only
        # in inference mode.
        with torch.inference_mode():
            if (tuple(x.shape), x.dtype, x.device) != self._key:
                self._capture(x)
            self._input.copy_(x)
            self._graph.replay()
            # The captured output is overwritten by the next replay.
            return self._output.clone()
