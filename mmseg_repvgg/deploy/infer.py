"""Segment images, folders of images and videos with a deploy form.

The work behind ``tools/infer.py``. A checkpoint is loaded strictly
(:func:`~mmseg_repvgg.deploy.load_segmentor`), turned into a deploy form
(:func:`~mmseg_repvgg.deploy.deployed.deploy_model`, the fused fp32 model by
default) and wrapped back into the mmseg segmentor
(:func:`~mmseg_repvgg.deploy.deployed.deployed_segmentor`), so that mmseg's
own :func:`mmseg.apis.inference_model` runs it: the config's test
pipeline, the data preprocessor, the resize of the logits to the image's
size and the argmax are mmseg's, exactly what the test loop runs.

Two choices keep it equal to ``tools/test.py``:

* The pipeline is the test dataloader's (``cfg.test_dataloader.dataset
  .pipeline``, which the test loop runs and ``--cfg-options`` changes), not
  the top-level ``test_pipeline`` variable that ``inference_model`` reads
  by default; the latter is used only when the config has no test
  dataloader.
* Each image is decoded by the pipeline's own first transform (the
  config's ``LoadImageFromFile`` with its arguments) and the decoded array
  handed to ``inference_model``, which swaps that first transform for
  ``LoadImageFromNDArray`` and runs the rest. So each image is read once,
  for the model and for the overlay picture, and an unreadable one fails
  before the model runs.

Outputs, per image ``STEM.EXT``: ``OUT/STEM.png`` (the label map, uint8
train IDs, or Cityscapes label IDs), ``OUT/vis/STEM.png`` (mmseg's
visualizer's overlay) and with ``save_logits`` ``OUT/STEM.npy`` (float32
C x H x W: the logits after mmseg's resize to the image's size). A video
gives ``OUT/vis/STEM.mp4`` and with ``save_frames`` ``OUT/STEM/NNNNNN.png``
(and ``.npy``) per frame. Every file is written atomically
(:mod:`mmseg_repvgg.atomic_io`).
"""
import copy
import os
import os.path as osp
import re
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
from mmcv.transforms import LoadImageFromFile
from mmengine.config import Config
from mmengine.utils import ProgressBar, scandir
from mmseg.apis import inference_model
from mmseg.registry import DATASETS, TRANSFORMS
from mmseg.structures import SegDataSample
from mmseg.visualization import SegLocalVisualizer
from torch import nn

from ..atomic_io import atomic_path
from ..errors import ConfigError
from .artifacts import load_segmentor
from .calibration import (CALIBRATION_IMAGES, calibration_batches,
                          eval_dataset_cfg)
from .deployed import DeployedModel, deploy_model, deployed_segmentor
from .forms import needs_calibration

#: Extensions read as images (in a folder, the only files taken).
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp',
                    '.ppm', '.pgm')
#: Extensions read as videos (cv2.VideoCapture).
VIDEO_EXTENSIONS = ('.mp4', '.avi', '.mov', '.mkv')
#: Frame rate of the overlay video when the input does not say its own.
DEFAULT_FPS = 25.0
#: Codec of the overlay videos (``OUT/vis/STEM.mp4``).
VIDEO_FOURCC = 'mp4v'
#: Opacity of the drawn classes: the image shows through, as with
#: ``mmseg.apis.show_result_pyplot``'s default.
OVERLAY_ALPHA = 0.5

Report = Callable[[str, str], None]


class BadInput(Exception):
    """One input cannot be used; the message says why (the run goes on)."""


@dataclass(frozen=True)
class Source:
    """One image or video to segment.

    Args:
        path (str): The file.
        kind (str): ``'image'`` or ``'video'``.
        frames (int): Frames a video says it has (1 for an image); only
            the progress bar's total.
    """

    path: str
    kind: str
    frames: int = 1

    @property
    def stem(self) -> str:
        """The name its outputs take (the file name less its extension)."""
        return osp.splitext(osp.basename(self.path))[0]


@dataclass
class Summary:
    """What :meth:`Inferencer.run` did."""

    images: int = 0
    frames: int = 0
    failed: int = 0
    seconds: float = 0.0

    @property
    def per_second(self) -> float:
        """Images and frames segmented per second, writing included."""
        return (self.images + self.frames) / max(self.seconds, 1e-9)


def _one_line(err: BaseException) -> str:
    return re.sub(r'\s+', ' ', str(err) or type(err).__name__).strip()


def _video_frames(path: str) -> int:
    """Frames the video ``path`` says it holds; BadInput if unreadable."""
    capture = cv2.VideoCapture(path)
    try:
        if not capture.isOpened():
            raise BadInput('cannot open the video (cv2.VideoCapture)')
        return max(int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), 1)
    finally:
        capture.release()


def _folder_images(folder: str, skip: Optional[str]) -> List[str]:
    """The images under ``folder`` (recursively, sorted), less those under
    ``skip`` (the output folder, whose PNGs a rerun must not re-read)."""
    paths = []
    for rel in sorted(
            scandir(
                folder, IMAGE_EXTENSIONS, recursive=True,
                case_sensitive=False)):
        path = osp.join(folder, rel)
        real = osp.realpath(path)
        if skip and (real + os.sep).startswith(skip + os.sep):
            continue
        paths.append(path)
    return paths


def collect_sources(inputs: Sequence[str],
                    report: Report,
                    out_dir: Optional[str] = None) -> Tuple[List[Source], int]:
    """Turn the command line's inputs into the images and videos to run.

    A bad input is reported (``report(path, why)``, one line) and skipped,
    so the others still run: a missing path, a file whose extension is
    neither an image's nor a video's, a folder without images, a video
    cv2 cannot open. The same file named twice (directly and through its
    folder, say) runs once. Two different files with the same stem would
    write the same outputs: the first (in command line order) keeps the
    name and each later one is reported and skipped, so no output is ever
    overwritten by another input's; run it with its own ``--out-dir``.

    Args:
        inputs (Sequence[str]): Image files, folders of images, videos.
        report (callable): Called with the input and the reason for each
            bad one.
        out_dir (str, optional): The output folder; images found under it
            while scanning a folder are not inputs.

    Returns:
        tuple[list[Source], int]: The sources, and how many inputs failed.
    """
    skip = osp.realpath(out_dir) if out_dir else None
    sources: List[Source] = []
    seen_files = set()
    stems: Dict[str, str] = {}
    failed = 0

    def add(path: str) -> None:
        real = osp.realpath(path)
        if real in seen_files:
            return
        seen_files.add(real)
        ext = osp.splitext(path)[1].lower()
        if ext in IMAGE_EXTENSIONS:
            source = Source(path, 'image')
        elif ext in VIDEO_EXTENSIONS:
            source = Source(path, 'video', _video_frames(path))
        else:
            raise BadInput(f'unknown extension {ext or "(none)"!r}: images '
                           f'are {" ".join(IMAGE_EXTENSIONS)}, videos '
                           f'{" ".join(VIDEO_EXTENSIONS)}')
        if source.stem in stems:
            raise BadInput(f'skipped: its outputs ({source.stem}.*) would '
                           f'overwrite those of {stems[source.stem]}, which '
                           'has the same name; run it with its own '
                           '--out-dir')
        stems[source.stem] = path
        sources.append(source)

    for item in inputs:
        if osp.isdir(item):
            paths = _folder_images(item, skip)
            if not paths:
                report(
                    item, 'no images in this folder (looked for '
                    f'{" ".join(IMAGE_EXTENSIONS)}, recursively)')
                failed += 1
        elif not osp.exists(item):
            report(item, 'no such file or folder')
            failed += 1
            continue
        else:
            paths = [item]
        for path in paths:
            try:
                add(path)
            except BadInput as err:
                report(path, str(err))
                failed += 1
    return sources, failed


def inference_config(cfg: Config) -> Config:
    """A copy of ``cfg`` whose ``test_pipeline`` is what the test loop runs.

    ``inference_model`` builds its pipeline from ``model.cfg.test_pipeline``
    and edits that list in place (drops LoadAnnotations, renames the first
    transform), so the model gets its own copy.

    Raises:
        ConfigError: No test pipeline, or one that does not start by
            loading the image from a file.
    """
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
            f'the test pipeline starts with {first!r}; mmseg\'s '
            'inference_model needs it to start with LoadImageFromFile')
    infer_cfg = copy.deepcopy(cfg)
    infer_cfg.test_pipeline = copy.deepcopy(pipeline)
    return infer_cfg


def _default_palette(num_classes: int) -> List[List[int]]:
    """The colours mmseg's BaseSegDataset draws for classes without any."""
    rng = np.random.RandomState(42)
    return rng.randint(0, 255, size=(num_classes, 3)).tolist()


def dataset_meta(cfg: Config,
                 checkpoint: dict,
                 num_classes: Optional[int] = None) -> dict:
    """The classes and palette to draw with, as mmseg's ``init_model``
    finds them.

    In order: the checkpoint's ``meta['dataset_meta']`` (what the Runner
    saves), the config's test dataset ``metainfo``, the ``METAINFO`` of its
    dataset class in mmseg's DATASETS (Cityscapes' for
    CityscapesDataset and its subclasses), else numbered classes. A
    missing or mis-sized palette is drawn as mmseg's datasets do.

    Args:
        cfg (Config): The config.
        checkpoint (dict): The loaded checkpoint.
        num_classes (int, optional): The model's output channels; classes
            of another count are not this model's and are skipped.

    Returns:
        dict: ``classes`` (tuple of str) and ``palette`` (list of RGB).
    """
    dataset = eval_dataset_cfg(cfg)
    dataset_type = dataset.get('type')
    if isinstance(dataset_type, str):
        dataset_type = DATASETS.get(dataset_type)
    meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
    found = [
        (meta or {}).get('dataset_meta') or {},
        dataset.get('metainfo') or {},
        getattr(dataset_type, 'METAINFO', None) or {},
    ]
    for candidate in found:
        classes = candidate.get('classes')
        if classes and num_classes in (None, len(classes)):
            palette = candidate.get('palette')
            break
    else:
        classes = [str(i) for i in range(num_classes or 0)]
        palette = None
    if not classes:
        raise ConfigError('cannot tell the classes: the checkpoint has no '
                          "meta['dataset_meta'] and the config's test "
                          'dataset no metainfo')
    if not palette or len(palette) != len(classes):
        palette = _default_palette(len(classes))
    return dict(
        classes=tuple(classes), palette=[list(map(int, c)) for c in palette])


def train_id_to_label_id(classes: Sequence[str]) -> np.ndarray:
    """A lookup table from train IDs to Cityscapes label IDs.

    The Cityscapes test server wants label IDs (road 7, car 26); the
    models predict train IDs (road 0, car 13). The table is
    cityscapesscripts' ``trainId2label``.

    Args:
        classes (Sequence[str]): The model's classes; they must be the 19
            Cityscapes train classes in train ID order.

    Returns:
        np.ndarray: uint8 array of 256; entry ``t`` is train ID t's label
        ID.

    Raises:
        ConfigError: The classes are not Cityscapes'.
    """
    from cityscapesscripts.helpers.labels import trainId2label
    names = [trainId2label[i].name for i in range(19)]
    if [c.lower() for c in classes] != names:
        raise ConfigError(
            '--label-ids maps Cityscapes train IDs to label IDs, but the '
            f'model\'s classes are not the 19 Cityscapes classes '
            f'({", ".join(list(classes)[:4])}, ...); drop --label-ids')
    table = np.zeros(256, np.uint8)  # anything else: 0, 'unlabeled'
    for train_id in range(19):
        table[train_id] = trainId2label[train_id].id
    return table


def _write_bytes(path: str, data: bytes) -> None:
    with atomic_path(path) as tmp, open(tmp, 'wb') as f:
        f.write(data)


def _write_png(path: str, image: np.ndarray) -> None:
    ok, encoded = cv2.imencode('.png', image)
    if not ok:
        raise RuntimeError(f'cv2 could not encode {path}')
    _write_bytes(path, encoded.tobytes())


def _write_npy(path: str, array: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, 'wb') as f:
        np.save(f, array)


def _to_rgb(image: np.ndarray) -> np.ndarray:
    """A BGR (or gray, or float) image as the uint8 RGB the visualizer
    draws on."""
    if image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    if image.ndim == 2 or image.shape[2] == 1:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


class Inferencer:
    """Runs a segmentor on images and videos and writes what it predicts.

    Args:
        segmentor (nn.Module): An mmseg segmentor with ``cfg`` (its test
            pipeline, see :func:`inference_config`) and ``dataset_meta``,
            as ``inference_model`` wants it; usually a
            :func:`~mmseg_repvgg.deploy.deployed.deployed_segmentor`.
        label_ids (bool): Write Cityscapes label IDs instead of train IDs
            (the test server's format).
        save_logits (bool): Also write the logits (``STEM.npy``).
        save_frames (bool): Also write each video frame's label map.
        deployed (DeployedModel, optional): The form inside, for its name.
    """

    def __init__(self,
                 segmentor: nn.Module,
                 label_ids: bool = False,
                 save_logits: bool = False,
                 save_frames: bool = False,
                 deployed: Optional[DeployedModel] = None):
        self.segmentor = segmentor
        self.deployed = deployed
        self.save_logits = save_logits
        self.save_frames = save_frames
        meta = segmentor.dataset_meta
        self.label_table = train_id_to_label_id(
            meta['classes']) if label_ids else None
        if len(meta['classes']) > 256:
            raise ConfigError(f'{len(meta["classes"])} classes do not fit '
                              'the uint8 label PNGs')
        # The loading transform of the test pipeline, built before
        # inference_model renames it in the model's copy of the config.
        self._load = TRANSFORMS.build(
            copy.deepcopy(segmentor.cfg.test_pipeline[0]))
        self.visualizer = SegLocalVisualizer(
            name=f'infer_{id(self)}', alpha=OVERLAY_ALPHA)
        self.visualizer.dataset_meta = dict(
            classes=meta['classes'], palette=meta['palette'])

    def load_image(self, path: str) -> np.ndarray:
        """Decode ``path`` with the test pipeline's loading transform.

        Raises:
            BadInput: It cannot be read or decoded.
        """
        try:
            results = self._load(dict(img_path=path))
        except (OSError, ValueError, AssertionError, cv2.error) as err:
            # mmcv asserts that the decoded image is not None.
            raise BadInput(f'cannot read the image ({_one_line(err)})')
        if results is None:  # LoadImageFromFile(ignore_empty=True)
            raise BadInput('cannot read the image')
        return results['img']

    def predict(self, image: np.ndarray) -> SegDataSample:
        """mmseg's ``inference_model`` on one decoded (BGR) image."""
        return inference_model(self.segmentor, image)

    def overlay(self,
                image: np.ndarray,
                result: SegDataSample,
                with_labels: bool = True) -> np.ndarray:
        """The prediction drawn over ``image`` by mmseg's visualizer (BGR).
        """
        self.visualizer.add_datasample(
            'prediction',
            _to_rgb(image),
            result,
            draw_gt=False,
            draw_pred=True,
            with_labels=with_labels)
        return cv2.cvtColor(self.visualizer.get_image(), cv2.COLOR_RGB2BGR)

    def label_map(self, result: SegDataSample) -> np.ndarray:
        """The predicted uint8 label map at the image's size (train IDs, or
        label IDs with ``label_ids``)."""
        labels = result.pred_sem_seg.data[0].cpu().numpy().astype(np.uint8)
        if self.label_table is not None:
            labels = self.label_table[labels]
        return labels

    def _write_prediction(self, base: str, result: SegDataSample) -> None:
        _write_png(base + '.png', self.label_map(result))
        if self.save_logits:
            logits = result.seg_logits.data.float().cpu().numpy()
            _write_npy(base + '.npy', logits)

    def image(self, path: str, out_dir: str) -> None:
        """Segment one image file into ``out_dir``.

        Raises:
            BadInput: It cannot be read.
        """
        image = self.load_image(path)
        result = self.predict(image)
        stem = osp.splitext(osp.basename(path))[0]
        self._write_prediction(osp.join(out_dir, stem), result)
        _write_png(
            osp.join(out_dir, 'vis', f'{stem}.png'),
            self.overlay(image, result))

    def video(self,
              path: str,
              out_dir: str,
              on_frame: Callable[[], None] = lambda: None) -> int:
        """Segment every frame of a video into an overlay video.

        The overlay, ``out_dir/vis/STEM.mp4``, has the input's size and
        frame rate (:data:`DEFAULT_FPS` if it gives none), without class
        names (they would jump from frame to frame).

        Returns:
            int: The frames segmented.

        Raises:
            BadInput: It cannot be opened or has no frame.
        """
        stem = osp.splitext(osp.basename(path))[0]
        capture = cv2.VideoCapture(path)
        try:
            ok, frame = capture.read()
            if not ok:
                raise BadInput('cannot read a frame of this video')
            fps = capture.get(cv2.CAP_PROP_FPS)
            fps = fps if fps and fps > 0 else DEFAULT_FPS
            height, width = frame.shape[:2]
            target = osp.join(out_dir, 'vis', f'{stem}.mp4')
            count = 0
            with atomic_path(target) as tmp:
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
        """Segment every source into ``out_dir`` under a progress bar.

        A source that turns out unreadable is reported (one line) and
        counted in ``Summary.failed``; the others still run.
        """
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


def build_inferencer(cfg: Config,
                     checkpoint: str,
                     form: str = 'fused',
                     calibration_images: int = CALIBRATION_IMAGES,
                     device: str = 'cpu',
                     label_ids: bool = False,
                     save_logits: bool = False,
                     save_frames: bool = False) -> Inferencer:
    """Load a checkpoint, make its deploy form and wrap it for inference.

    Args:
        cfg (Config): The config (training or deploy).
        checkpoint (str): A train-time or deploy checkpoint.
        form (str): A deploy form name, or ``'auto'``
            (:func:`~mmseg_repvgg.deploy.deployed.deploy_model`).
        calibration_images (int): Training images that calibrate the int8
            forms (and let ``'auto'`` consider them; 0: ``'auto'`` picks
            among the float forms only). Unused by the other forms.
        device (str): Where the form runs.
        label_ids (bool): See :class:`Inferencer`.
        save_logits (bool): See :class:`Inferencer`.
        save_frames (bool): See :class:`Inferencer`.

    Raises:
        ConfigError: Unknown form, bad config or options.
        FormUnavailable: The form cannot run here.
    """
    calibrated = needs_calibration(form)
    infer_cfg = inference_config(cfg)
    model, ckpt = load_segmentor(cfg, checkpoint)
    calibration = None
    if calibrated and (calibration_images > 0 or form != 'auto'):
        calibration = calibration_batches(cfg, model, calibration_images)
    deployed = deploy_model(
        model, form, calibration=calibration, device=device)
    segmentor = deployed_segmentor(model, deployed)
    segmentor.cfg = infer_cfg
    head = getattr(model, 'decode_head', None)
    segmentor.dataset_meta = dataset_meta(cfg, ckpt,
                                          getattr(head, 'num_classes', None))
    return Inferencer(segmentor, label_ids, save_logits, save_frames, deployed)
