"""The commands of README.md and docs/*.md run as written after the set-up.

Every code block and inline code span is scanned:

* a path into the toy data (``data/toy_cityscapes``) or the demo's
  outputs (``work_dirs/demo``) must exist after ``bash tools/demo.sh``;
* a training checkpoint's name must be one the configs write (they train
  by epochs: ``epoch_40.pth``, not ``iter_40000.pth``);
* a path into the repository (``tools/``, ``configs/``, ``docs/``) must
  exist;
* the README says to activate the environment before its first ``python``.

The demo is run as its tool runs it, shrunk (tiny model, 32x64 toy
images, ``--epochs 1``, which makes the checkpoint and validation
intervals follow the epochs as the config's own do); its file names are
then those of the full run with ``epoch_1`` for ``epoch_40``.
"""
import os
import re
import shutil
import subprocess
import sys
from fnmatch import fnmatch
from pathlib import Path

from mmengine.config import Config

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / 'README.md', *sorted((REPO / 'docs').glob('*.md'))]
TOY = 'configs/pspnet_repvgg_toy_cityscapes.py'
FENCE = re.compile(r'^ *```\w*\n(.*?)^ *```', re.S | re.M)
PATH_END = r'[^\s\'"`,;)\]\\]*'
DEMO_PATH = re.compile(r'(?:data/toy_cityscapes|work_dirs/demo)(?:/' +
                       PATH_END + ')?')
IN_REPO = re.compile(r'(?<![\w/.$])(?:tools|configs|docs)/' + PATH_END)
# A checkpoint a training run wrote: (work dir, file name).
RUN_CHECKPOINT = re.compile(
    r'work_dirs/([^/\s]+)/\S*?([\w*]*(?:iter|epoch)_[\d*]+\.pth)')


def code_of(doc: Path) -> str:
    """The fenced blocks and inline code spans of ``doc``, one text."""
    text = doc.read_text()
    blocks = FENCE.findall(text)
    spans = re.findall(r'`([^`]+)`', FENCE.sub('', text))
    return '\n'.join(blocks + spans)


def demo_outputs(root: Path, options: list, toy_data: Path) -> set:
    """Run the shrunk demo in ``root``; the full run's relative paths.

    Args:
        root (Path): Stands for the repository root.
        options (list): ``--cfg-options`` making the run tiny.
        toy_data (Path): The tiny toy Cityscapes, copied in.
    """
    data = root / 'data' / 'toy_cityscapes'
    shutil.copytree(toy_data, data)
    result = subprocess.run([
        sys.executable, 'tools/demo.py', '--work-dir',
        str(root / 'work_dirs' / 'demo'), '--data-root',
        str(data), '--epochs', '1', '--cfg-options', *options
    ],
                            cwd=REPO,
                            env=dict(os.environ, OMP_NUM_THREADS='1'),
                            capture_output=True,
                            text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    epochs = Config.fromfile(str(REPO / TOY)).train_cfg.max_epochs
    paths = set()
    for path in root.rglob('*'):
        name = path.relative_to(root).as_posix()
        paths.add(re.sub(r'epoch_1(?!\d)', f'epoch_{epochs}', name))
    return paths


def test_docs_name_what_the_demo_writes(tiny_toy_options, toy_cityscapes_tiny,
                                        tmp_path):
    outputs = demo_outputs(tmp_path, tiny_toy_options, toy_cityscapes_tiny)
    assert 'work_dirs/demo/epoch_40.pth' in outputs  # the mapping held
    missing, names = [], set()
    for doc in DOCS:
        code = code_of(doc)
        for path in DEMO_PATH.findall(code):
            path = path.rstrip('/.')
            if not any(fnmatch(p, path) for p in outputs):
                missing.append(f'{doc.name}: {path}')
        names |= set(RUN_CHECKPOINT.findall(code))
    assert missing == [], 'not written by bash tools/demo.sh'
    # A run's checkpoints, their epoch as a wildcard, in the demo's work dir
    # or in tools/train.py's default one, work_dirs/CONFIG_NAME.
    written = {
        re.sub(r'\d+', '*',
               Path(p).name)
        for p in outputs if p.endswith('.pth')
    }
    work_dirs = {'demo'} | {p.stem for p in (REPO / 'configs').glob('*.py')}
    wrong = {(d, n)
             for d, n in names
             if re.sub(r'\d+', '*', n) not in written or d not in work_dirs}
    assert wrong == set(), (f'the configs write {sorted(written)} into '
                            'work_dirs/demo or work_dirs/CONFIG_NAME')


def test_repository_paths_in_the_docs_exist():
    missing = [
        f'{doc.name}: {path}' for doc in DOCS
        for path in IN_REPO.findall(code_of(doc))
        # CONFIG@FORMS and CONFIG=CHECKPOINT are the benchmark's model specs
        if '*' not in path
        and not (REPO / re.split('[@=]', path)[0].rstrip('/.')).exists()
    ]
    assert missing == []


def test_readme_activates_the_environment_before_its_first_python():
    text = (REPO / 'README.md').read_text()
    first_python = min(m.start() for m in FENCE.finditer(text)
                       if re.search(r'^\s*python ', m.group(1), re.M))
    activate = text.find('source .venv/bin/activate')
    assert 0 <= activate < first_python
