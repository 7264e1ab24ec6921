"""Segment images and videos with a deploy form: mmseg's ``MMSegInferencer``
on a strictly loaded deploy form, plus what its ``__call__`` lacks: outputs
named after each input, written atomically; label IDs, logits, videos."""
import copy
import os
import os.path as osp
import time
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence

import cv2
import numpy as np
from mmcv.transforms import LoadImageFromFile
from mmengine.config import Config, ConfigDict
from mmengine.utils import ProgressBar
from mmseg.apis import MMSegInferencer
from mmseg.registry import TRANSFORMS
from mmseg.structures import SegDataSample
from torch import nn

from ..atomic_io import atomic_path
from ..checkpoint import load_segmentor
from ..deploy.api import deploy_segmentors
from ..deploy.calibration import CALIBRATION_IMAGES, eval_dataset_cfg
from ..deploy.deployed import DeployedModel
from ..errors import ConfigError
from .labels import dataset_meta, train_id_to_label_id
from .sources import BadInput, Report, Source

#: Frame rate of the overlay video when the input does not say its own.
DEFAULT_FPS = 25.0
#: Codec of the overlay videos (``OUT/vis/STEM.mp4``).
VIDEO_FOURCC = 'mp4v'
#: Opacity of the drawn classes (``show_result_pyplot``'s default).
OVERLAY_ALPHA = 0.5


@dataclass
class Summary:
    """What :meth:`DeployInferencer.run` did."""

    images: int = 0
    frames: int = 0
    failed: int = 0
    seconds: float = 0.0

    @property
    def per_second(self) -> float:
        """Images and frames segmented per second, writing included."""
        return (self.images + self.frames) / max(self.seconds, 1e-9)


def _write_png(path: str, image: np.ndarray) -> None:
    ok, encoded = cv2.imencode('.png', image)
    if not ok:
        raise RuntimeError(f'cv2 could not encode {path}')
    with atomic_path(path) as tmp, open(tmp, 'wb') as f:
        f.write(encoded.tobytes())


def _to_rgb(image: np.ndarray) -> np.ndarray:
    """A BGR, gray or float image as the uint8 RGB the visualizer draws on."""
    if image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    if image.ndim == 2 or image.shape[2] == 1:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def inference_pipeline(cfg: Config) -> List[dict]:
    """A copy of the test (else val) dataloader's pipeline, else the config's
    ``test_pipeline``, which must start by loading a file."""
    pipeline = eval_dataset_cfg(cfg).get('pipeline') or cfg.get(
        'test_pipeline')
    if not pipeline:
        raise ConfigError('the config has no test pipeline '
                          '(test_dataloader.dataset.pipeline or '
                          'test_pipeline) to run the images through')
    first = pipeline[0].get('type')
    loader = TRANSFORMS.get(first) if isinstance(first, str) else first
    if not (isinstance(loader, type)
            and issubclass(loader, LoadImageFromFile)):
        raise ConfigError(
            f'the test pipeline starts with {first!r}; mmseg\'s inferencer '
            'needs it to start with LoadImageFromFile')
    return copy.deepcopy(list(pipeline))


class DeployInferencer(MMSegInferencer):
    """mmseg's inferencer running a deploy form, writing named outputs.

    Args:
        cfg (Config): The config (training or deploy).
        checkpoint (str): A train-time or deploy checkpoint.
        form (str): A deploy form spec, or ``'auto'``.
        calibration_images (int): Training images that calibrate int8.
        device (str): Where the form runs.
        label_ids (bool): Write Cityscapes label IDs instead of train IDs.
        save_logits (bool): Also write the logits (``STEM.npy``).
        save_frames (bool): Also write each video frame's label map.

    Raises:
        ConfigError: Unknown form, bad config or options.
        FormUnavailable: The form cannot run here.
    """

    def __init__(self,
                 cfg: Config,
                 checkpoint: str,
                 form: str = 'fused',
                 calibration_images: int = CALIBRATION_IMAGES,
                 device: str = 'cpu',
                 label_ids: bool = False,
                 save_logits: bool = False,
                 save_frames: bool = False):
        # Read by _init_model and _init_pipeline (BaseInferencer.__init__);
        # checked first, so a bad config fails before the checkpoint loads.
        self._pipeline_cfg = inference_pipeline(cfg)
        self.form = form
        self.calibration_images = calibration_images
        self.deployed: Optional[DeployedModel] = None
        super().__init__(model=cfg, weights=checkpoint, device=device)
        self.save_logits = save_logits
        self.save_frames = save_frames
        classes = self.model.dataset_meta['classes']
        if len(classes) > 256:
            raise ConfigError(
                f'{len(classes)} classes do not fit the uint8 label PNGs')
        self.label_table = train_id_to_label_id(classes) if label_ids else None

    def _init_model(self, cfg: Config, weights: str, device: str) -> nn.Module:
        """The deploy form, in place of mmseg's non-strict load."""
        model, ckpt = load_segmentor(cfg, weights)
        [(self.deployed, segmentor)
         ] = deploy_segmentors(cfg, model, [self.form],
                               self.calibration_images, device)
        segmentor.cfg = cfg
        head = getattr(model, 'decode_head', None)
        segmentor.dataset_meta = dataset_meta(
            cfg, ckpt, getattr(head, 'num_classes', None))
        return segmentor

    def _init_pipeline(self, cfg: Config):
        """:func:`inference_pipeline`, its loader kept to decode images."""
        pipeline = copy.deepcopy(self._pipeline_cfg)
        self._load = TRANSFORMS.build(copy.deepcopy(pipeline[0]))
        # mmseg finds the loader by this exact name; a subclass of it was
        # accepted above and, as in mmseg, gets InferencerLoader instead.
        pipeline[0] = dict(pipeline[0], type='LoadImageFromFile')
        return super()._init_pipeline(
            ConfigDict(test_dataloader=dict(dataset=dict(pipeline=pipeline))))

    def _init_visualizer(self, cfg: Config):
        """The config's visualizer; overlays are written here, atomically."""
        vis_cfg = copy.deepcopy(
            cfg.get('visualizer') or dict(type='SegLocalVisualizer'))
        vis_cfg.pop('vis_backends', None)
        vis_cfg.pop('save_dir', None)
        return super()._init_visualizer(ConfigDict(visualizer=vis_cfg))

    def load_image(self, path: str) -> np.ndarray:
        """Decode ``path`` with the test pipeline's loader, or BadInput."""
        try:
            results = self._load(dict(img_path=path))
        except (OSError, ValueError, AssertionError, cv2.error) as err:
            # mmcv asserts that the decoded image is not None.
            reason = ' '.join((str(err) or type(err).__name__).split())
            raise BadInput(f'cannot read the image ({reason})')
        if results is None:  # LoadImageFromFile(ignore_empty=True)
            raise BadInput('cannot read the image')
        return results['img']

    def predict(self, image: np.ndarray) -> SegDataSample:
        """mmseg's ``preprocess`` and ``forward`` on one BGR image."""
        return self.forward(next(self.preprocess([image])))[0]

    def overlay(self,
                image: np.ndarray,
                result: SegDataSample,
                with_labels: bool = True) -> np.ndarray:
        """A BGR ``image`` with the prediction drawn by mmseg's visualize."""
        drawn = self.visualize([_to_rgb(image)], [result],
                               return_vis=True,
                               opacity=OVERLAY_ALPHA,
                               with_labels=with_labels)[0]
        return cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR)

    def label_map(self, result: SegDataSample) -> np.ndarray:
        """The uint8 label map: train IDs, or label IDs with ``label_ids``."""
        labels = self.postprocess([result], None)['predictions']
        labels = labels.astype(np.uint8)
        if self.label_table is not None:
            labels = self.label_table[labels]
        return labels

    def _write_prediction(self, base: str, result: SegDataSample) -> None:
        _write_png(base + '.png', self.label_map(result))
        if self.save_logits:
            logits = result.seg_logits.data.float().cpu().numpy()
            with atomic_path(base + '.npy') as tmp, open(tmp, 'wb') as f:
                np.save(f, logits)

    def image(self, path: str, out_dir: str) -> None:
        """Segment one image file into ``out_dir`` (BadInput if unreadable)."""
        image = self.load_image(path)
        result = self.predict(image)
        stem = osp.splitext(osp.basename(path))[0]
        self._write_prediction(osp.join(out_dir, stem), result)
        overlay = self.overlay(image, result)
        _write_png(osp.join(out_dir, 'vis', f'{stem}.png'), overlay)

    def video(self,
              path: str,
              out_dir: str,
              on_frame: Callable[[], None] = lambda: None) -> int:
        """Segment a video's frames into ``out_dir/vis/STEM.mp4``, without
        class names (they would jump); the frame count, or BadInput."""
        stem = osp.splitext(osp.basename(path))[0]
        capture = cv2.VideoCapture(path)
        try:
            ok, frame = capture.read()
            if not ok:
                raise BadInput('cannot read a frame of this video')
            fps = capture.get(cv2.CAP_PROP_FPS)
            fps = fps if fps and fps > 0 else DEFAULT_FPS
            height, width = frame.shape[:2]
            count = 0
            with atomic_path(osp.join(out_dir, 'vis', f'{stem}.mp4')) as tmp:
                # cv2 picks the container by the extension: write a .mp4
                # beside the temporary file, then move it there.
                tmp_video = tmp + '.mp4'
                writer = cv2.VideoWriter(tmp_video,
                                         cv2.VideoWriter_fourcc(*VIDEO_FOURCC),
                                         fps, (width, height))
                try:
                    if not writer.isOpened():
                        raise RuntimeError(
                            f'cv2.VideoWriter cannot write {VIDEO_FOURCC} '
                            'videos here')
                    while ok:
                        result = self.predict(frame)
                        if self.save_frames:
                            self._write_prediction(
                                osp.join(out_dir, stem, f'{count:06d}'),
                                result)
                        writer.write(self.overlay(frame, result, False))
                        count += 1
                        on_frame()
                        ok, frame = capture.read()
                    writer.release()
                    os.replace(tmp_video, tmp)
                finally:
                    writer.release()
                    if osp.exists(tmp_video):
                        os.remove(tmp_video)
        finally:
            capture.release()
        return count

    def run(self, sources: Sequence[Source], out_dir: str,
            report: Report) -> Summary:
        """Segment every source into ``out_dir``; report unreadable ones."""
        summary = Summary()
        bar = ProgressBar(sum(source.frames for source in sources))
        start = time.perf_counter()
        for source in sources:
            try:
                if source.kind == 'video':
                    summary.frames += self.video(source.path, out_dir,
                                                 bar.update)
                else:
                    self.image(source.path, out_dir)
                    summary.images += 1
                    bar.update()
            except BadInput as err:
                bar.file.write('\n')  # the report on a line of its own
                report(source.path, str(err))
                summary.failed += 1
        summary.seconds = time.perf_counter() - start
        bar.file.write('\n')  # the bar ends its line only when told
        bar.file.flush()
        return summary
