"""What each deploy form costs in mIoU against fp32 fused, scored in one
pass over the test data by ``tools/test.py --deploy-form``'s test loop."""
import contextlib
import sys
import tempfile
from typing import Callable, Dict, Optional, Sequence

from mmengine.runner import Runner

from ..checkpoint.safe_load import route_checkpoint_loading
from ..config import load_config
from ..deploy.calibration import CALIBRATION_IMAGES
from ..deploy.forms import check_form

#: The fp32 reference every other form is compared with.
REFERENCE_FORM = 'fused'


def miou_check(config: str,
               checkpoint: str,
               forms: Sequence[str] = (REFERENCE_FORM, 'reduced'),
               device: str = 'cpu',
               max_images: Optional[int] = None,
               log: Callable[[str], None] = lambda message: None,
               calibration_images: int = CALIBRATION_IMAGES,
               allow_emulated: bool = False) -> Dict:
    """mIoU of each form of a trained model on its test data.

    Args:
        config (str): The training (or deploy) config.
        checkpoint (str): Train-time or deploy checkpoint.
        forms (Sequence[str]): Form specs to score after ``'fused'``.
        device (str): Where the forms are checked to run.
        max_images (int, optional): Only the first images of the data.
        log (callable): Progress lines.
        calibration_images (int): Training images that calibrate int8.
        allow_emulated (bool): Also score emulated precisions.

    Returns:
        dict: ``forms``: one row per form with ``mIoU``, ``miou_diff``
        (points against fp32 fused) and ``label_agreement``; ``skipped``.
    """
    names, skipped = [], {}
    for spec in [REFERENCE_FORM, *forms]:
        try:
            name = check_form(spec, device, allow_emulated).name
        except Exception as err:  # ConfigError or FormUnavailable
            skipped[str(spec)] = str(err)
            log(f'mIoU check: {spec} skipped: {err}')
            continue
        if name not in names:
            names.append(name)
    cfg = load_config(config)
    cfg.load_from = checkpoint
    cfg.log_level = 'ERROR'
    cfg.test_cfg = dict(
        type='DeployFormTestLoop',
        forms=names,
        calibration_images=calibration_images,
        allow_emulated=allow_emulated)
    if max_images:
        cfg.test_dataloader.dataset.indices = max_images
    route_checkpoint_loading(cfg)
    # stdout is the benchmark's report: the Runner's lines go to stderr.
    with tempfile.TemporaryDirectory() as work_dir, \
            contextlib.redirect_stdout(sys.stderr):
        cfg.work_dir = work_dir
        runner = Runner.from_cfg(cfg)
        runner.test()
    results = runner.test_loop.results
    base = _miou(results[0]['metrics'])
    rows = []
    for result in results:
        metrics = {k: float(v) for k, v in result['metrics'].items()}
        miou = _miou(metrics)
        diff = None if None in (miou, base) else miou - base
        rows.append(dict(result, metrics=metrics, mIoU=miou, miou_diff=diff))
        log(f'mIoU check: {result["label"]}: mIoU {miou}')
    return dict(
        config=config,
        checkpoint=checkpoint,
        images=len(runner.test_loop.dataloader.dataset),
        calibration_images=calibration_images,
        forms=rows,
        skipped=skipped)


def _miou(metrics: Dict) -> Optional[float]:
    return next((float(v) for k, v in metrics.items() if k.endswith('mIoU')),
                None)
