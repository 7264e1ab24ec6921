"""The images and videos a command line names, checked before any model
is built.

mmengine's ``BaseInferencer._inputs_to_list`` lists one folder level and
takes every file in it; ``tools/infer.py`` needs more, so this is written
by hand: folders are searched recursively (mmengine's ``scandir``) for
image extensions only, the output folder is skipped, videos are told from
images, the same file named twice runs once, and a bad input is reported
in one line while the others go on.
"""
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
