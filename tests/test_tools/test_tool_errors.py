"""Bad configs, arguments and files: every tool fails in one clear line.

Each case of :data:`CASES` runs a tool's ``main`` in-process (as
``python tools/NAME.py ARGS`` would: ``run_cli`` turns a UserError into
``error: ...`` on stderr and exit 2) and must give exit 2, a single
``error:`` line naming the cause and the fix, no traceback, and leave every
file that existed before untouched. The table of cases and their messages
in docs/reliability.md is checked against what the tools print, so it
cannot drift; after changing a message, rewrite it with::

    RELIABILITY_DOC_REGEN=1 python -m pytest \
        tests/test_tools/test_tool_errors.py

Paths in the table: ``$TOY`` is configs/pspnet_repvgg_toy_cityscapes.py,
``$IN`` holds the inputs made once below (checkpoints of the toy model:
``good``, ``other_arch`` (another width), ``deploy`` (fused by
tools/reparam.py, with its ``deploy.py``), ``truncated``, ``corrupt`` and
``evil``, one with a pickle payload), ``$TMP`` is each case's own scratch
directory, where ``existing.pth``/``existing.onnx`` (old outputs),
``a_file`` (a file, so ``$TMP/a_file/work`` cannot be created even by
root) and ``work/epoch_1.pth`` (an earlier run) are waiting.
"""
import hashlib
import os
import struct
import subprocess
import sys
import zipfile
from pathlib import Path
from urllib.error import URLError

import pytest
import torch
from mmengine.config import Config

from mmseg_repvgg.atomic_io import atomic_write
from mmseg_repvgg.cli.checks import (backbone_out_channels,
                                     check_checkpoint_file_fits_config,
                                     check_head_channels)
from mmseg_repvgg.errors import CheckpointError, ConfigError

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / 'docs' / 'reliability.md'
BEGIN, END = '<!-- tool-errors:begin -->', '<!-- tool-errors:end -->'
TOY = 'configs/pspnet_repvgg_toy_cityscapes.py'
PAPER = 'configs/pspnet_repvgg_b1g2_cityscapes.py'
REGEN = os.environ.get('RELIABILITY_DOC_REGEN') == '1'
BEFORE_AFTER = ('<!-- before-after:begin -->', '<!-- before-after:end -->')

# (tool, what goes wrong, arguments). Each case exits 2 with one line.
CASES = [
    ('train', 'config file missing', '$TMP/missing.py'),
    ('train', 'unknown arch',
     '$TOY --work-dir $TMP/work --cfg-options model.backbone.arch=B7'),
    ('train', 'decode head channels do not match the backbone',
     '$TOY --work-dir $TMP/work --cfg-options '
     'model.decode_head.in_channels=512'),
    ('train', 'auxiliary head reads a backbone output that does not exist',
     '$TOY --work-dir $TMP/work --cfg-options '
     'model.auxiliary_head.in_index=5'),
    ('train', 'pretrained backbone file missing',
     f'{PAPER} --work-dir $TMP/work --cfg-options '
     'model.backbone.init_cfg.checkpoint=$TMP/RepVGG-B1g2-train.pth'),
    ('train', 'pretrained weights name unknown',
     f'{PAPER} --work-dir $TMP/work --cfg-options '
     'model.backbone.init_cfg.checkpoint=mmpretrain://repvgg-B7'),
    ('train', 'data root missing', '$TOY --work-dir $TMP/work --cfg-options '
     'train_dataloader.dataset.data_root=$TMP/no_data'),
    ('train', 'work dir cannot be created',
     '$TOY --work-dir $TMP/a_file/work'),
    ('train', 'work dir is a file', '$TOY --work-dir $TMP/a_file'),
    ('train', 'unknown --cfg-options key',
     '$TOY --work-dir $TMP/work --cfg-options model.backbone.archh=B1'),
    ('train', 'resume: checkpoint missing',
     '$TOY --work-dir $TMP/work --resume $TMP/missing.pth'),
    ('train', 'resume: checkpoint of another arch',
     '$TOY --work-dir $TMP/work --resume $IN/other_arch.pth'),
    ('train', 'resume: truncated checkpoint',
     '$TOY --work-dir $TMP/work --resume $IN/truncated.pth'),
    ('train', 'resume: pickle payload',
     '$TOY --work-dir $TMP/work --resume $IN/evil.pth'),
    ('train', 'load_from: deploy checkpoint into the train-time config',
     '$TOY --work-dir $TMP/work --cfg-options load_from=$IN/deploy.pth'),
    ('test', 'checkpoint of another arch',
     '$TOY $IN/other_arch.pth --work-dir $TMP/work'),
    ('test', 'corrupt checkpoint',
     '$TOY $IN/corrupt.pth --work-dir $TMP/work'),
    ('test', 'checkpoint missing',
     '$TOY $TMP/missing.pth --work-dir $TMP/work'),
    ('test', 'unknown --deploy-form',
     '$TOY $IN/good.pth --deploy-form winograd_fast'),
    ('test', '--out is a file',
     '$TOY $IN/truncated.pth --work-dir $TMP/work --out $TMP/a_file'),
    ('test', '--show-dir lies under a file',
     '$TOY $IN/truncated.pth --work-dir $TMP/work --show-dir $TMP/a_file/v'),
    ('infer', '--out-dir is a file',
     '$TOY $IN/truncated.pth $TMP/existing.pth --out-dir $TMP/a_file'),
    ('reparam', 'OUT is a directory', '$TOY $IN/truncated.pth $TMP/work/'),
    ('reparam', 'truncated checkpoint, OUT exists',
     '$TOY $IN/truncated.pth $TMP/existing.pth'),
    ('reparam', 'checkpoint is already a deploy checkpoint',
     '$IN/deploy.py $IN/deploy.pth $TMP/out.pth'),
    ('export_onnx', 'shape not a multiple of the output stride',
     '$TOY $IN/good.pth --out $TMP/existing.onnx --shape 100 200'),
    ('export_onnx', 'checkpoint of another arch',
     '$TOY $IN/other_arch.pth --out $TMP/existing.onnx --shape 64 128'),
    ('export_onnx', '--out is a directory',
     '$TOY $IN/truncated.pth --out $TMP/work --shape 64 128'),
    ('export_onnx', '--out lies under a file',
     '$TOY $IN/truncated.pth --out $TMP/a_file/m.onnx --shape 64 128'),
    ('convert_checkpoint', 'unknown arch',
     '$IN/good.pth $TMP/existing.pth --arch B7'),
    ('convert_checkpoint', 'checkpoint of another arch',
     '$IN/good.pth $TMP/existing.pth --arch A0'),
    ('convert_checkpoint', 'DST is a directory',
     '$IN/truncated.pth $TMP/work --arch A0'),
    ('benchmark', 'nothing to measure', '--baselines'),
    ('benchmark', 'unknown form', '$TOY --forms fused winograd_fast'),
    ('benchmark', '--out-dir is a file',
     '$TOY --baselines --out-dir $TMP/a_file'),
    ('make_toy_cityscapes', 'ROOT is a file', '$TMP/a_file'),
    ('demo', 'work dir is a file', '--work-dir $TMP/a_file'),
    ('convert_cityscapes', 'data root missing', '$TMP/no_cityscapes'),
    # Cases that used to trace back or mislead (BEFORE has what they gave).
    ('train', '--cfg-options pair without =',
     '$TOY --work-dir $TMP/run --cfg-options model.backbone.arch:B1'),
    ('train', '--cfg-options value with unbalanced brackets',
     '$TOY --work-dir $TMP/run --cfg-options '
     'model.backbone.out_indices=[0,1'),
    ('reparam', '--cfg-options pair without =',
     '$TOY $IN/good.pth $TMP/out.pth --cfg-options model.backbone.arch:B1'),
    ('test', '--cfg-options key a near miss of a dataloader key',
     '$TOY $IN/good.pth --work-dir $TMP/run --cfg-options '
     'test_dataloader.batch_sise=2'),
    ('train', '--cfg-options key a near miss of a train_cfg key',
     '$TOY --work-dir $TMP/run --cfg-options train_cfg.max_epoch=2'),
    ('test', 'checkpoint is a directory',
     '$TOY $TMP/work --work-dir $TMP/run'),
    ('train', 'resume: checkpoint is a directory',
     '$TOY --work-dir $TMP/run --resume $TMP/work'),
    ('train', 'config is a directory', 'configs --work-dir $TMP/run'),
    ('test', 'config and checkpoint swapped',
     '$IN/good.pth $TOY --work-dir $TMP/run'),
    ('convert_checkpoint', 'SRC is a directory',
     '$TMP/work $TMP/out.pth --arch A0'),
    ('train', 'pretrained weights by name, offline',
     f'{PAPER} --work-dir $TMP/run --cfg-options '
     'train_dataloader.dataset.data_root=$DATA '
     'val_dataloader.dataset.data_root=$DATA'),
    ('test', 'checkpoint with its first 4 KB zeroed',
     '$TOY $IN/zeroed.pth --work-dir $TMP/run'),
    ('test', 'tensor bytes changed after saving',
     '$IN/deploy.py $IN/flipped.pth --work-dir $TMP/run'),
    ('test', 'Cityscapes data root missing',
     '$TOY $IN/good.pth --work-dir $TMP/run --cfg-options '
     'test_dataloader.dataset.data_root=data/cityscapes'),
    ('train', 'data root is a file', '$TOY --work-dir $TMP/run --cfg-options '
     'train_dataloader.dataset.data_root=$TMP/a_file'),
    ('test', '--deploy-form a form this machine cannot run',
     '$TOY $IN/good.pth --work-dir $TMP/run --deploy-form reduced_graph '
     '--allow-emulated'),  # what runs instead is then the same on any CPU
]

# What the previous release gave for the cases that used to trace back or
# mislead (python tools/NAME.py ARGS in a fresh process, the toy data at
# data/toy_cityscapes): exit status, stderr lines, whether the work dir
# was written, the first and the last line of stderr.
BEFORE = {
    ('train', '--cfg-options pair without ='):
    (1, 30, False, 'Traceback (most recent call last):',
     'ValueError: not enough values to unpack (expected 2, got 1)'),
    ('train', '--cfg-options value with unbalanced brackets'):
    (1, 36, False, 'Traceback (most recent call last):',
     'AssertionError: Imbalanced brackets exist in [0,1'),
    ('reparam', '--cfg-options pair without ='):
    (1, 30, False, 'Traceback (most recent call last):',
     'ValueError: not enough values to unpack (expected 2, got 1)'),
    ('test', '--cfg-options key a near miss of a dataloader key'):
    (1, 32, True,
     'mmseg/engine/hooks/visualization_hook.py:60: UserWarning: The'
     ' draw is False, it means that the hook for visualization will'
     ' not take effect. The results will NOT be visualized or '
     'stored.', 'TypeError: DataLoader.__init__() got an unexpected keyword '
     "argument 'batch_sise'"),
    ('train', '--cfg-options key a near miss of a train_cfg key'):
    (1, 24, True,
     'mmseg/engine/hooks/visualization_hook.py:60: UserWarning: The'
     ' draw is False, it means that the hook for visualization will'
     ' not take effect. The results will NOT be visualized or '
     'stored.', 'TypeError: EpochBasedTrainLoop.__init__() got an unexpected '
     "keyword argument 'max_epoch'"),
    ('test', 'checkpoint is a directory'):
    (2, 1, False, 'error: checkpoint file not found: $TMP/work; train first '
     '(tools/train.py CONFIG writes WORK_DIR/epoch_N.pth, '
     'best_mIoU_*.pth and deploy_final.pth) or pass an existing '
     'file', None),
    ('train', 'resume: checkpoint is a directory'):
    (2, 1, False, 'error: checkpoint file not found: $TMP/work; train first '
     '(tools/train.py CONFIG writes WORK_DIR/epoch_N.pth, '
     'best_mIoU_*.pth and deploy_final.pth) or pass an existing '
     'file', None),
    ('train', 'config is a directory'):
    (2, 1, False, 'error: config file not found: configs; the configs are in '
     'configs/, e.g. configs/pspnet_repvgg_toy_cityscapes.py', None),
    ('test', 'config and checkpoint swapped'):
    (2, 1, False, 'error: $IN/good.pth: cannot load the config (OSError: Only '
     'py/yml/yaml/json type are supported now!)', None),
    ('convert_checkpoint', 'SRC is a directory'):
    (2, 1, False, 'error: $TMP/work: checkpoint file not found. Get ImageNet '
     'weights first: e.g. the official RepVGG-B2-train.pth '
     '(DingXiaoH/RepVGG release, Google Drive links in its README),'
     ' and convert it: python tools/convert_checkpoint.py SRC '
     '$TMP/work --arch ARCH', None),
    ('train', 'pretrained weights by name, offline'):
    (2, 5, True,
     'mmseg/engine/hooks/visualization_hook.py:60: UserWarning: The'
     ' draw is False, it means that the hook for visualization will'
     ' not take effect. The results will NOT be visualized or '
     'stored.', 'error: mmpretrain://repvgg-B1g2 (https://download.openmmlab.c'
     'om/mmclassification/v0/repvgg/repvgg-B1g2_8xb32_in1k_20221213'
     '-ae6428fd.pth): download failed ([Errno 111] Connection '
     'refused); nothing was saved. Offline? Download the file '
     'elsewhere and put it at $TMP/torch_home/hub/checkpoints/repvg'
     'g-B1g2_8xb32_in1k_20221213-ae6428fd.pth (used from there '
     'without a request; $TORCH_HOME moves the cache), or use a '
     'local checkpoint file of any layout instead '
     '(init_cfg.checkpoint=PATH)'),
    ('test', 'checkpoint with its first 4 KB zeroed'):
    (2, 1, False, 'error: $IN/zeroed.pth: not a readable PyTorch checkpoint '
     '(truncated or corrupt: RuntimeError: Cannot use '
     '``weights_only=True`` with files saved in the legacy .tar '
     'format); re-download or re-save it', None),
    ('test', 'tensor bytes changed after saving'):
    (0, 2, True,
     'mmseg/engine/hooks/visualization_hook.py:60: UserWarning: The'
     ' draw is False, it means that the hook for visualization will'
     ' not take effect. The results will NOT be visualized or '
     'stored.', None),
    ('test', 'Cityscapes data root missing'):
    (2, 1, False, 'error: data/cityscapes: dataset root not found (data_root, '
     'relative to $REPO); get the data with python '
     'tools/make_toy_cityscapes.py data/toy_cityscapes (the '
     'built-in toy set), or download Cityscapes '
     '(leftImg8bit_trainvaltest.zip, gtFine_trainvaltest.zip from '
     'https://www.cityscapes-dataset.com), unzip it there and run '
     'python tools/convert_cityscapes.py DATA_ROOT', None),
    ('train', 'data root is a file'):
    (2, 1, False, 'error: $TMP/a_file: dataset root not found (data_root, '
     'relative to $REPO); get the data with python '
     'tools/make_toy_cityscapes.py data/toy_cityscapes (the '
     'built-in toy set), or download Cityscapes '
     '(leftImg8bit_trainvaltest.zip, gtFine_trainvaltest.zip from '
     'https://www.cityscapes-dataset.com), unzip it there and run '
     'python tools/convert_cityscapes.py DATA_ROOT', None),
    ('test', '--deploy-form a form this machine cannot run'):
    (2, 3, True,
     'mmseg/engine/hooks/visualization_hook.py:60: UserWarning: The'
     ' draw is False, it means that the hook for visualization will'
     ' not take effect. The results will NOT be visualized or '
     'stored.', 'error: reduced_graph: CUDA graphs replay recorded CUDA '
     'kernels: the form needs a CUDA device (use the same form '
     'without _graph on the CPU)'),
}


class CommandPayload:
    """Unpickling runs ``touch FLAG``."""

    def __init__(self, flag):
        self.flag = str(flag)

    def __reduce__(self):
        return os.system, (f'touch {self.flag}', )


def _toy_model_checkpoint(path: Path, cfg: Config) -> None:
    from mmseg_repvgg.checkpoint import build_segmentor
    torch.manual_seed(0)
    model = build_segmentor(cfg)
    torch.save(
        dict(meta=dict(epoch=1, iter=1), state_dict=model.state_dict()), path)


def make_inputs(root: Path) -> Path:
    """Write the checkpoints the cases read ($IN) into ``root``."""
    from mmseg_repvgg.deploy import reparam_checkpoint
    cfg = Config.fromfile(str(REPO / TOY))
    _toy_model_checkpoint(root / 'good.pth', cfg)
    other = Config.fromfile(str(REPO / TOY))
    other.model.backbone.arch.width_factor = (0.25, ) * 4
    other.model.decode_head.in_channels = 128
    other.model.auxiliary_head.in_channels = 64
    _toy_model_checkpoint(root / 'other_arch.pth', other)
    reparam_checkpoint(
        cfg,
        str(root / 'good.pth'),
        str(root / 'deploy.pth'),
        shape=(1, 3, 64, 128))
    good = (root / 'good.pth').read_bytes()
    (root / 'truncated.pth').write_bytes(good[:len(good) // 2])
    gen = torch.Generator().manual_seed(0)
    (root / 'corrupt.pth').write_bytes(
        bytes(torch.randint(0, 256, (4096, ), generator=gen).tolist()))
    checkpoint = torch.load(root / 'good.pth', weights_only=True)
    checkpoint['meta']['note'] = CommandPayload(root / 'pwned')
    torch.save(checkpoint, root / 'evil.pth')
    zeroed = bytearray(good)
    zeroed[:4096] = bytes(4096)
    (root / 'zeroed.pth').write_bytes(bytes(zeroed))
    flip_tensor_byte(root / 'deploy.pth', root / 'flipped.pth')
    return root


def flip_tensor_byte(src: Path, dst: Path) -> None:
    """Copy ``src`` with one byte flipped inside its largest tensor."""
    with zipfile.ZipFile(src) as archive:
        entry = max((i for i in archive.infolist() if '/data/' in i.filename),
                    key=lambda i: i.file_size)
    data = bytearray(src.read_bytes())
    # The tensor's bytes follow the entry's local header (30 bytes, name,
    # extra field); torch stores them uncompressed.
    name_len, extra_len = struct.unpack_from('<HH', data,
                                             entry.header_offset + 26)
    start = entry.header_offset + 30 + name_len + extra_len
    data[start + entry.file_size // 2] ^= 0x01
    dst.write_bytes(bytes(data))


@pytest.fixture(scope='module')
def inputs(tmp_path_factory):
    """The checkpoints the cases read ($IN)."""
    return make_inputs(tmp_path_factory.mktemp('inputs'))


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """An empty download cache, and no network: every download fails."""
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))

    def unreachable(url, *args, **kwargs):
        raise URLError(OSError(101, 'Network is unreachable'))

    monkeypatch.setattr(torch.hub, 'download_url_to_file', unreachable)


def _scratch(root: Path) -> Path:
    """A case's $TMP, with the old outputs a failing tool must not touch."""
    root.mkdir()
    (root / 'existing.pth').write_bytes(b'an earlier output')
    (root / 'existing.onnx').write_bytes(b'an earlier export')
    (root / 'a_file').write_text('not a directory')
    (root / 'work').mkdir()
    (root / 'work' / 'epoch_1.pth').write_bytes(b'an earlier checkpoint')
    return root


def _snapshot(*roots: Path) -> dict:
    """Every path under ``roots``: a file's SHA-256, None for a directory."""
    return {
        path:
        hashlib.sha256(path.read_bytes()).hexdigest()
        if path.is_file() else None
        for root in roots
        for path in root.rglob('*')
    }


def _expand(args: str, paths: dict) -> list:
    for name, path in paths.items():
        args = args.replace(name, str(path))
    return args.split()


def _normalize(text: str, paths: dict) -> str:
    text = text.replace(torch.hub.get_dir(), '~/.cache/torch/hub')
    for name, path in paths.items():
        if name != '$TOY':  # a config's path stays as the user wrote it
            text = text.replace(str(path), name)
    return text.replace(str(REPO), '$REPO')


def _row(*cells) -> str:
    return '| ' + ' | '.join(c.replace('|', '\\|') for c in cells) + ' |'


def render_table(rows) -> str:
    """The Markdown table of :data:`CASES` and what each printed."""
    header = [
        '| Tool | Case | Arguments | Exit | Message (stderr) |',
        '| --- | --- | --- | --- | --- |'
    ]
    return '\n'.join(header + list(rows))


def render_before_after(messages: dict) -> str:
    """The table of :data:`BEFORE`, beside what each case prints now."""
    rows = [
        '| Tool | Case | Arguments | Before | Before: stderr, first ... last '
        'line | Now | Now: stderr |', '| --- ' * 7 + '|'
    ]
    args = {(tool, what): a for tool, what, a in CASES}
    for key, (code, count, wrote, first, last) in BEFORE.items():
        now = messages.get(key)  # one case: the other rows are not read
        before = f'`{first}`' + (f' ... `{last}`' if last else '')
        rows.append(
            _row(
                f'`{key[0]}`', key[1], f'`{args[key]}`',
                f'exit {code}, {count} line{"s" * (count > 1)}, work dir '
                f'{"written" if wrote else "not written"}', before,
                'exit 2, 1 line, nothing written', f'`{now}`'))
    return '\n'.join(rows)


def _doc_table(begin: str = BEGIN, end: str = END) -> str:
    text = DOC.read_text()
    assert begin in text and end in text, f'{DOC} lacks the table markers'
    return text.split(begin)[1].split(end)[0].strip()


def _write_doc_table(table: str, begin: str = BEGIN, end: str = END) -> None:
    text = DOC.read_text()
    head, rest = text.split(begin)
    atomic_write(DOC, f'{head}{begin}\n{table}\n{end}{rest.split(end)[1]}')


def run_case(case, tmp: Path, inputs: Path, run_tool) -> str:
    """Run one case, check it fails cleanly; return its message."""
    tool, what, args = case
    paths = {'$TOY': TOY, '$IN': inputs, '$TMP': _scratch(tmp)}
    if '$DATA' in args:  # a toy data set, made only where a case reads it
        paths['$DATA'] = make_toy_data(tmp.parent / 'data')
    before = _snapshot(tmp, inputs)
    code, err = run_tool(tool, *_expand(args, paths))
    lines = err.strip().splitlines()
    assert code == 2, f'{tool} ({what}): exit {code}, stderr:\n{err}'
    assert len(lines) == 1 and lines[0].startswith('error: '), err
    after = _snapshot(tmp, inputs)
    assert [str(p) for p, h in after.items() if before.get(p) != h] == []
    assert [str(p) for p in before if p not in after] == []
    assert not (inputs / 'pwned').exists(), 'a pickle payload ran'
    return _normalize(lines[0], paths)


def make_toy_data(root: Path) -> Path:
    """Toy Cityscapes of 2 train and 2 val images of 32x64 ($DATA)."""
    from mmseg_repvgg.datasets import make_toy_cityscapes
    make_toy_cityscapes(str(root), num_train=2, num_val=2, size=(32, 64))
    return root


OUT_OF_DATE = ('docs/reliability.md is out of date; rewrite its tables with '
               'RELIABILITY_DOC_REGEN=1 python -m pytest '
               'tests/test_tools/test_tool_errors.py')


@pytest.mark.skipif(REGEN, reason='test_doc_table rewrites the table')
@pytest.mark.parametrize(
    'index', range(len(CASES)), ids=[f'{c[0]}: {c[1]}' for c in CASES])
def test_case_fails_clearly_as_documented(index, inputs, tmp_path, run_tool,
                                          monkeypatch, offline):
    monkeypatch.chdir(REPO)  # relative paths as a user in the repo has them
    tool, what, args = CASES[index]
    message = run_case(CASES[index], tmp_path / 'case', inputs, run_tool)
    documented = _doc_table().splitlines()[2:]
    assert index < len(documented), OUT_OF_DATE
    assert documented[index] == _row(f'`{tool}`', what, f'`{args}`', '2',
                                     f'`{message}`'), OUT_OF_DATE
    if (tool, what) in BEFORE:
        row = render_before_after({
            (tool, what): message
        }).splitlines()[2 + list(BEFORE).index((tool, what))]
        assert row in _doc_table(*BEFORE_AFTER).splitlines(), OUT_OF_DATE


def test_doc_table(inputs, tmp_path, run_tool, monkeypatch, offline):
    """One row per case (regenerated, with RELIABILITY_DOC_REGEN=1)."""
    if REGEN:
        monkeypatch.chdir(REPO)
        messages = {
            (case[0], case[1]):
            run_case(case, tmp_path / f'case{i}', inputs, run_tool)
            for i, case in enumerate(CASES)
        }
        _write_doc_table(
            render_table(
                _row(f'`{tool}`', what, f'`{args}`', '2',
                     f'`{messages[(tool, what)]}`')
                for tool, what, args in CASES))
        _write_doc_table(render_before_after(messages), *BEFORE_AFTER)
    table = _doc_table().splitlines()
    assert table[:2] == render_table([]).splitlines(), OUT_OF_DATE
    assert len(table) - 2 == len(CASES), OUT_OF_DATE
    assert len(_doc_table(*BEFORE_AFTER).splitlines()) == 2 + len(BEFORE)


def test_entry_point_prints_one_line_not_a_traceback(tmp_path):
    """The real entry point, in a subprocess: nothing but the error line."""
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONWARNINGS='ignore')
    result = subprocess.run([
        sys.executable, 'tools/train.py', TOY, '--work-dir',
        str(tmp_path / 'work'), '--cfg-options',
        'model.decode_head.in_channels=512'
    ],
                            cwd=REPO,
                            env=env,
                            capture_output=True,
                            text=True,
                            timeout=300)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        'error: model.decode_head.in_channels=512 but the backbone gives 256 '
        'at in_index 3 (backbone out_channels [32, 64, 128, 256]); set '
        'model.decode_head.in_channels=256, or in_index to the output that '
        'has 512 channels'
    ]


def test_cases_are_unique_and_cover_every_checkpoint_tool():
    keys = [(tool, what) for tool, what, _ in CASES]
    assert len(set(keys)) == len(keys)
    tools = {tool for tool, _, _ in CASES}
    assert {'train', 'test', 'reparam', 'export_onnx',
            'convert_checkpoint'} <= tools


# One config per head shape (PSP is the toy's, run by test_resume.py): UPer
# takes a list, DeepLabV3+ a second input, FCN one; ResNet is not ours.
@pytest.mark.parametrize('config', [
    'upernet_repvgg_b1g2_cityscapes.py',
    'deeplabv3plus_repvgg_b1g2_cityscapes.py', 'fcn_repvgg_b1g2_cityscapes.py',
    'pspnet_repvgg_b2_fast_cityscapes.py', 'pspnet_r50-d8_paper_cityscapes.py'
])
def test_shipped_configs_pass_the_head_check(config):
    """No false alarm: every config's heads fit its backbone."""
    cfg = Config.fromfile(str(REPO / 'configs' / config))
    assert backbone_out_channels(cfg.model)  # built and probed on meta
    check_head_channels(cfg.model)


def test_multi_input_head_mismatch_names_every_channel():
    cfg = Config.fromfile(
        str(REPO / 'configs' / 'upernet_repvgg_b1g2_cityscapes.py'))
    cfg.model.decode_head.in_channels = [128, 256, 512, 1024]
    with pytest.raises(
            ConfigError,
            match=r'set model.decode_head.in_'
            r'channels=\[128, 256, 512, 2048\]'):
        check_head_channels(cfg.model)


def test_checkpoints_that_fit_pass(inputs):
    cfg = Config.fromfile(str(REPO / TOY))
    good, deploy = str(inputs / 'good.pth'), str(inputs / 'deploy.pth')
    for purpose in ('test', 'resume', 'load_from'):
        check_checkpoint_file_fits_config(cfg, good, purpose)
    check_checkpoint_file_fits_config(cfg, deploy, 'test')  # the hook shapes
    check_checkpoint_file_fits_config(
        Config.fromfile(str(inputs / 'deploy.py')), deploy, 'test')
    tta = cfg.copy()  # tools/test.py --tta wraps the segmentor
    tta.tta_model.module = tta.model
    tta.model = tta.tta_model
    check_checkpoint_file_fits_config(tta, good, 'test')
    # Fine-tuning to another number of classes: only the backbone counts.
    cfg.model.decode_head.num_classes = 5
    check_checkpoint_file_fits_config(cfg, good, 'load_from')
    with pytest.raises(CheckpointError, match='resized keys'):
        check_checkpoint_file_fits_config(cfg, good, 'test')


def test_new_config_keys_are_added_as_mmengine_adds_them():
    """Only a near miss of a key present is refused, not a new key."""
    from mmseg_repvgg.config import load_config
    cfg = load_config(
        str(REPO / TOY), {
            'val_dataloader.dataset.indices': 3,
            'default_hooks.checkpoint.save_last': False,
            'model.test_cfg.crop_size': (8, 8),
            'train_dataloader.dataset.pipeline.2.scale': (64, 32)
        })
    assert cfg.val_dataloader.dataset.indices == 3
    assert cfg.default_hooks.checkpoint.save_last is False
    assert cfg.model.test_cfg.crop_size == (8, 8)
    with pytest.raises(
            ConfigError, match='did you mean val_dataloader.'
            'dataset.data_root'):
        load_config(str(REPO / TOY), {'val_dataloader.dataset.data_rot': 'x'})
