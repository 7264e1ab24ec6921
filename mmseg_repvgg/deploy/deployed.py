"""What the pipeline returns: :class:`DeployedModel`, a segmentor in one
deploy form (normalized NCHW fp32 batch in, fp32 logits out, whatever runs
inside), and :func:`deployed_segmentor`, which puts one back inside an
mmseg segmentor so mmseg's inference, test loop and evaluator run it."""
import copy
from typing import Callable, ContextManager, List, Optional, Sequence

from torch import Tensor, nn

from .forms import Form


class DeployedModel(nn.Module):
    """A segmentor in one deploy form: normalized NCHW fp32 batch in, fp32
    logits at the input's size out.

    Args:
        form (Form): The form.
        run (callable): Runs the form on an fp32 batch (on ``device``).
        device (str): Where it runs; inputs are moved there.
        segmentor (nn.Module, optional): The PyTorch model inside (None
            for runtime sessions).
        notes (list[str]): What was decided while making it (e.g. int8
            activation bits, Winograd fallbacks).
        cast (callable, optional): An eager PyTorch form's cast of an fp32
            batch to its module's input (dtype, memory format, device).
        context (callable, optional): The context an eager PyTorch form
            runs its module under; with ``cast``, lets a caller run a part
            of ``segmentor`` (e.g. the backbone) as the form runs it.
        session (RuntimeSession, optional): The onnxruntime or OpenVINO
            session of a runtime form; it is also what ``run`` calls.
    """

    def __init__(self,
                 form: Form,
                 run: Callable[[Tensor], Tensor],
                 device: str = 'cpu',
                 segmentor: Optional[nn.Module] = None,
                 notes: Sequence[str] = (),
                 session: Optional[nn.Module] = None,
                 cast: Optional[Callable[[Tensor], Tensor]] = None,
                 context: Optional[Callable[[], ContextManager]] = None):
        super().__init__()
        self.form = form
        self.device = str(device)
        self.session = session
        # A plain attribute: a session passed as ``run`` is registered once,
        # as ``session``, not a second time under this name.
        object.__setattr__(self, '_run', run)
        self.segmentor = segmentor
        self.notes = list(notes)
        self.cast = cast
        self.context = context

    def forward(self, inputs: Tensor) -> Tensor:
        return self._run(inputs.to(self.device)).float()

    def extra_repr(self) -> str:
        return f'form={self.form.name!r} ({self.form.label(self.device)})'


def deployed_segmentor(segmentor: nn.Module,
                       deployed: DeployedModel,
                       inplace: bool = False) -> nn.Module:
    """The segmentor with its ``encode_decode`` run by ``deployed``.

    mmseg's whole and slide inference, the resizing to the original image
    and the argmax all call ``encode_decode``; only that method changes,
    so the config's test loop, evaluator and ``mmseg.apis`` score and run
    the deploy form exactly as they do the PyTorch model.

    Args:
        segmentor (nn.Module): The mmseg segmentor (its data preprocessor,
            test_cfg and postprocessing are used as they are).
        deployed (DeployedModel): From :func:`deploy_model`.
        inplace (bool): Change ``segmentor`` itself; by default a shallow
            copy (sharing the submodules) is changed.
    """
    model = segmentor if inplace else copy.copy(segmentor)

    def encode_decode(inputs: Tensor, batch_img_metas: List[dict]) -> Tensor:
        return deployed(inputs).to(inputs.device)

    # An instance attribute (a plain function: not registered as a module,
    # so the state dict is unchanged) shadows the class's method.
    model.encode_decode = encode_decode
    model.deploy_form = deployed.form.name
    return model
