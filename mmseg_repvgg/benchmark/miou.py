"""What each deploy form costs in accuracy: mIoU of each form on the
config's validation data, against the fp32 fused model. The int8 forms are
calibrated on training images, never on the images they are scored on.
Each form is made by :func:`~mmseg_repvgg.deploy.deploy_model` and run
through mmseg's own inference
(:func:`~mmseg_repvgg.deploy.deployed_segmentor`), as ``tools/test.py
--deploy-form`` runs it."""
import contextlib
import copy
import logging
from typing import Callable, Dict, Optional, Sequence

import torch
from mmengine.evaluator import Evaluator
from mmengine.logging import MMLogger
from mmengine.runner import Runner

from ..checkpoint import load_segmentor
from ..config import load_config
from ..deploy.api import deploy_model
from ..deploy.calibration import (CALIBRATION_IMAGES, calibration_batches,
                                  eval_loader_and_evaluator)
from ..deploy.deployed import deployed_segmentor
from ..deploy.forms import FormUnavailable, needs_calibration
from .forms import ALL_FORMS, benchmark_form

#: The fp32 reference every other form is compared with.
REFERENCE_FORM = 'fused'


@contextlib.contextmanager
def _quiet_log():
    """Keep IoUMetric's per-class table and notes off the log: stdout is
    the tool's report."""
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _miou(metrics: Dict) -> Optional[float]:
    return next((v for k, v in metrics.items() if k.endswith('mIoU')), None)


@torch.no_grad()
def miou_check(config: str,
               checkpoint: str,
               forms: Sequence[str] = (REFERENCE_FORM, 'reduced'),
               device: str = 'cpu',
               max_images: Optional[int] = None,
               log: Callable[[str], None] = lambda message: None,
               calibration_images: int = CALIBRATION_IMAGES,
               allow_emulated: bool = False) -> Dict:
    """mIoU of each form of a trained model on its validation data.

    Each batch goes through mmseg's data preprocessor once; every form
    then runs ``inference`` (whole or slide, as the config's test_cfg
    says) on it, and mmseg's ``postprocess_result`` and the config's
    evaluator score the labels.

    Args:
        config (str): The training (or deploy) config.
        checkpoint (str): Train-time or deploy checkpoint.
        forms (Sequence[str]): Deploy forms to score; ``'fused'`` (fp32)
            is always included as the reference.
        device (str): Where to run.
        max_images (int, optional): Stop after this many images.
        log (callable): Progress lines.
        calibration_images (int): Training images the int8 forms are
            calibrated on (:func:`calibration_batches`).
        allow_emulated (bool): Also score precisions the hardware only
            emulates (otherwise skipped, with the reason).

    Returns:
        dict: ``forms``: one row per form with ``mIoU``, ``miou_diff``
        (points, against fp32 fused) and ``label_agreement`` (share of
        pixels whose label equals fp32 fused's); ``images``.
    """
    forms = [REFERENCE_FORM] + [f for f in forms if f != REFERENCE_FORM]
    for name in forms:
        benchmark_form(name)
    cfg = load_config(config)
    model, _ = load_segmentor(cfg, checkpoint)
    loader_cfg, evaluator_cfg = eval_loader_and_evaluator(cfg)
    loader = Runner.build_dataloader(loader_cfg, seed=0)
    calibration = None
    if any(needs_calibration(ALL_FORMS[name]) for name in forms):
        calibration = calibration_batches(cfg, model, calibration_images)
    runs, evaluators, skipped = {}, {}, {}
    for name in list(forms):
        try:
            runs[name] = deployed_segmentor(
                model,
                deploy_model(
                    model,
                    ALL_FORMS[name],
                    calibration,
                    device,
                    allow_emulated=allow_emulated))
        except FormUnavailable as err:  # e.g. bf16 without AVX512-BF16
            log(f'mIoU check: {name} skipped: {err}')
            skipped[name] = str(err)
            forms.remove(name)
            continue
        with _quiet_log():
            evaluators[name] = Evaluator(copy.deepcopy(evaluator_cfg))
        evaluators[name].dataset_meta = loader.dataset.metainfo
    agree = {name: [0, 0] for name in forms}
    images = 0
    for batch in loader:
        data = model.data_preprocessor(batch, False)
        samples = data['data_samples']
        metas = [sample.metainfo for sample in samples]
        reference = None
        for name in forms:
            logits = runs[name].inference(data['inputs'], metas)
            preds = model.postprocess_result(logits.float().cpu(),
                                             copy.deepcopy(samples))
            labels = torch.stack([p.pred_sem_seg.data for p in preds])
            reference = labels if reference is None else reference
            agree[name][0] += int((labels == reference).sum())
            agree[name][1] += labels.numel()
            evaluators[name].process(data_samples=preds, data_batch=batch)
        images += len(samples)
        if max_images and images >= max_images:
            break
    rows = []
    for name in forms:
        with _quiet_log():
            metrics = evaluators[name].evaluate(images)
        metrics = {k: float(v) for k, v in metrics.items()}
        rows.append(
            dict(
                form=name,
                label=ALL_FORMS[name].label(device),
                mIoU=_miou(metrics),
                label_agreement=agree[name][0] / max(agree[name][1], 1),
                metrics=metrics))
        log(f'mIoU check: {rows[-1]["label"]}: mIoU {rows[-1]["mIoU"]}')
    base = rows[0]['mIoU']
    for row in rows:
        row['miou_diff'] = None if row['mIoU'] is None or base is None else (
            row['mIoU'] - base)
    return dict(
        config=config,
        checkpoint=checkpoint,
        images=images,
        calibration_images=len(calibration) if calibration else 0,
        forms=rows,
        skipped=skipped)
