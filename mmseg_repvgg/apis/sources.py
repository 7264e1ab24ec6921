"""The images and videos a command line names, checked before any model
is built. Beyond mmengine's ``_inputs_to_list``: folders searched
recursively for images only, the output folder skipped, one line per bad
input while the others go on."""
import os
import os.path as osp
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import cv2
from mmengine.utils import scandir

#: Extensions read as images (in a folder, the only files taken).
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp',
                    '.ppm', '.pgm')
#: Extensions read as videos (cv2.VideoCapture).
VIDEO_EXTENSIONS = ('.mp4', '.avi', '.mov', '.mkv')

#: ``report(path, why)``: how a bad input is told to the user.
Report = Callable[[str, str], None]


class BadInput(Exception):
    """One input cannot be used; the message says why (the run goes on)."""


@dataclass(frozen=True)
class Source:
    """One image or video to segment."""

    path: str
    kind: str  # 'image' or 'video'
    frames: int = 1  # what a video says it has (for the progress bar)

    @property
    def stem(self) -> str:
        """The name its outputs take."""
        return osp.splitext(osp.basename(self.path))[0]


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
    """The images under ``folder``, sorted, less those under ``skip`` (the
    output folder, whose PNGs a rerun must not read)."""
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

    A bad input (missing, unknown extension, an empty folder, an unreadable
    video) is reported and skipped. The same file named twice runs once; of
    files with the same stem, whose outputs would collide, the first runs.
    ``out_dir``, the output folder, is not scanned. Returns the sources and
    how many inputs failed.
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
