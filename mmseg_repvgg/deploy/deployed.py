"""What the pipeline returns (:class:`DeployedModel`) and how it goes back
inside an mmseg segmentor (:func:`deployed_segmentor`)."""
import copy
from typing import Callable, ContextManager, List, Optional, Sequence

from torch import Tensor, nn

from .forms import Form


class DeployedModel(nn.Module):
    """A segmentor in one deploy form: normalized fp32 batch in, logits out.

    Args:
        form (Form): The form.
        run (callable): Runs the form on an fp32 batch (on ``device``).
        device (str): Where it runs; inputs are moved there.
        segmentor (nn.Module, optional): The PyTorch model inside, if any.
        notes (list[str]): What was decided while making it.
        session (RuntimeSession, optional): A runtime form's session.
        cast (callable, optional): An eager form's cast of its input.
        context (callable, optional): What an eager form runs under.
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
        # Not a submodule: a session ``run`` is registered once, as session.
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
    """The segmentor with its ``encode_decode`` (what mmseg's inference,
    resizing and argmax call) run by ``deployed``.

    Args:
        segmentor (nn.Module): The mmseg segmentor.
        deployed (DeployedModel): From :func:`deploy_model`.
        inplace (bool): Change ``segmentor`` itself, not a shallow copy.
    """
    model = segmentor if inplace else copy.copy(segmentor)

    def encode_decode(inputs: Tensor, batch_img_metas: List[dict]) -> Tensor:
        return deployed(inputs).to(inputs.device)

    # A plain function (not a module: the state dict is unchanged).
    model.encode_decode = encode_decode
    model.deploy_form = deployed.form.name
    return model
