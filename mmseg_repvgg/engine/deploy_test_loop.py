"""DeployFormTestLoop: scores deploy forms in one pass over the test data."""
import copy
from typing import Dict, List, Sequence, Union

import torch
from mmengine.dist import all_reduce
from mmengine.runner import TestLoop, autocast
from mmseg.registry import LOOPS

from ..compare import agreeing_labels
from .hooks.utils import unwrap_segmentor


@LOOPS.register_module()
class DeployFormTestLoop(TestLoop):
    """Score deploy forms with the config's evaluator (``tools/test.py
    --deploy-form``, the benchmark's mIoU check).

    Every form runs every batch; the first form's outputs go to the hooks
    and its metrics are the loop's, each other form has its own evaluator.

    Args:
        runner, dataloader, evaluator, fp16: As mmengine's ``TestLoop``.
        forms (Sequence[str]): Form specs or ``'auto'``; the first is tested.
        calibration_images (int): Training images that calibrate int8.
        allow_emulated (bool): Accept a precision the hardware emulates.
    """

    def __init__(self,
                 runner,
                 dataloader,
                 evaluator: Union[Dict, List],
                 forms: Sequence[str] = ('fused', ),
                 calibration_images: int = 8,
                 allow_emulated: bool = False,
                 fp16: bool = False):
        super().__init__(runner, dataloader, evaluator, fp16)
        from ..deploy.forms import AUTO, parse_form
        for form in forms:  # a wrong spec fails before any data is read
            if form != AUTO:
                parse_form(form)
        self.forms = list(forms)
        self.calibration_images = calibration_images
        self.allow_emulated = allow_emulated
        self.evaluators = [self.evaluator] + [
            runner.build_evaluator(copy.deepcopy(evaluator))
            for _ in self.forms[1:]
        ]
        for other in self.evaluators[1:]:
            other.dataset_meta = self.evaluator.dataset_meta
        self.deployed: list = []
        # Per form made: name, label, notes, metrics, label_agreement.
        self.results: List[Dict] = []

    def run(self) -> dict:
        from ..deploy.api import deploy_segmentors
        self.runner.call_hook('before_test')
        self.runner.call_hook('before_test_epoch')
        model = unwrap_segmentor(self.runner.model).eval()
        made = deploy_segmentors(self.runner.cfg, model, self.forms,
                                 self.calibration_images,
                                 str(next(model.parameters()).device),
                                 self.allow_emulated)
        self.deployed = [deployed for deployed, _ in made]
        self._segmentors = [segmentor for _, segmentor in made]
        for deployed in self.deployed:
            notes = '; '.join(deployed.notes)
            self.runner.logger.info(
                f'testing the {deployed.form.name} deploy form '
                f'({deployed.form.label(deployed.device)})' +
                (f': {notes}' if notes else ''))
        self._agree = torch.zeros(len(made), 2, dtype=torch.long)
        for idx, data_batch in enumerate(self.dataloader):
            self.run_iter(idx, data_batch)
        size = len(self.dataloader.dataset)
        all_reduce(self._agree)  # a no-op unless distributed
        self.results = [
            dict(
                form=deployed.form.name,
                label=deployed.form.label(deployed.device),
                notes=list(deployed.notes),
                metrics=evaluator.evaluate(size),
                label_agreement=same / max(total, 1))
            for deployed, evaluator, (same, total) in zip(
                self.deployed, self.evaluators, self._agree.tolist())
        ]
        for result in self.results[1:]:
            self.runner.logger.info(
                f'{result["form"]}: {result["metrics"]}; labels '
                f'{result["label_agreement"]:.2%} of pixels as '
                f'{self.results[0]["form"]}')
        metrics = self.results[0]['metrics']
        self.runner.call_hook('after_test_epoch', metrics=metrics)
        self.runner.call_hook('after_test')
        return metrics

    @torch.no_grad()
    def run_iter(self, idx, data_batch: Sequence[dict]) -> None:
        self.runner.call_hook(
            'before_test_iter', batch_idx=idx, data_batch=data_batch)
        first = None
        for k, (segmentor, evaluator) in enumerate(
                zip(self._segmentors, self.evaluators)):
            with autocast(enabled=self.fp16):
                outputs = segmentor.test_step(data_batch)
            labels = [sample.pred_sem_seg.data for sample in outputs]
            first = first or (outputs, labels)
            pairs = [agreeing_labels(a, b) for a, b in zip(labels, first[1])]
            self._agree[k] += torch.tensor(pairs, dtype=torch.long).sum(0)
            evaluator.process(data_samples=outputs, data_batch=data_batch)
        self.runner.call_hook(
            'after_test_iter',
            batch_idx=idx,
            data_batch=data_batch,
            outputs=first[0])
