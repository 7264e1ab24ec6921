"""What the runtime sessions share: export to ONNX per input shape (static
graphs, which both runtimes optimize best), quantize if asked, run."""
import os.path as osp
import tempfile
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import ConfigError
from ..machine import machine

Shape = Tuple[int, ...]


def batches_at(calibration: Sequence[Tensor],
               shape: Shape) -> List[np.ndarray]:
    """Calibration batches resized (ranges do not depend on the size) and
    split (a remainder dropped) to fp32 arrays of exactly ``shape``."""
    out = []
    for batch in calibration:
        if tuple(batch.shape[2:]) != tuple(shape[2:]):
            batch = F.interpolate(
                batch, tuple(shape[2:]), mode='bilinear', align_corners=False)
        for image in batch.split(shape[0]):
            if image.shape[0] == shape[0]:
                out.append(np.ascontiguousarray(image.float().numpy()))
    return out


class RuntimeSession(nn.Module):
    """A runtime's sessions of ``structure``, exported by ``export(structure,
    path, (H, W))`` into ``workdir`` (a temporary folder by default), int8
    by the runtime's tool if asked. Subclasses set :attr:`name` (the form's
    ``runtime``), :meth:`_build` and :meth:`_run`."""

    name = 'runtime'

    def __init__(self,
                 structure: nn.Module,
                 export: Callable[[nn.Module, str, Tuple[int, int]], object],
                 int8: bool = False,
                 calibration: Optional[Sequence[Tensor]] = None,
                 device: str = 'cpu',
                 workdir: Optional[str] = None,
                 threads: Optional[int] = None):
        super().__init__()
        if int8 and not calibration:
            raise ConfigError(f'the {self.name} int8 form needs calibration '
                              'batches (e.g. --calibration-images 8)')
        self.structure = structure
        self.export = export
        self.int8 = int8
        self.calibration = list(calibration or [])
        self.device = str(device)
        self.threads = threads or torch.get_num_threads()
        self._tmp = None
        if workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix='mmseg_repvgg_')
            workdir = self._tmp.name
        self.workdir = workdir
        self.sessions: Dict[Shape, object] = {}
        self.files: Dict[Shape, str] = {}
        self.notes: List[str] = []
        if int8 and not machine().vnni:
            self.notes.append(f'{self.name} int8: no VNNI on this CPU, so '
                              'the quantizer avoids int16 saturation')

    def _onnx_path(self, shape: Shape) -> str:
        path = osp.join(self.workdir,
                        f'{self.name}_{"x".join(map(str, shape))}.onnx')
        self.export(self.structure, path, tuple(shape[2:]))
        return path

    def prepare(self, shape: Shape) -> None:
        """Export (and quantize) for inputs of ``shape`` if not done yet."""
        shape = tuple(shape)
        if shape not in self.sessions:
            self.sessions[shape] = self._build(shape)

    def forward(self, inputs: Tensor) -> Tensor:
        shape = tuple(inputs.shape)
        self.prepare(shape)
        array = np.ascontiguousarray(inputs.detach().float().cpu().numpy())
        return torch.from_numpy(self._run(self.sessions[shape], array))

    def weights_bytes(self) -> int:
        """Size of the largest model file a session runs."""
        return max((osp.getsize(p) for p in self.files.values()), default=0)

    def _build(self, shape: Shape):
        """A session for inputs of ``shape`` (its file in :attr:`files`)."""
        raise NotImplementedError

    def _run(self, session, array: np.ndarray) -> np.ndarray:
        """The logits of ``session`` on one input array."""
        raise NotImplementedError
