"""The key lists of real RepVGG checkpoints load strictly into our backbone.

``tests/data/checkpoint_manifests/*.json.gz`` hold the state-dict keys and
shapes (no weights) of models built with the three projects' own model
code: DingXiaoH/RepVGG's ``repvgg.py`` (eae7c52; train-time and deploy),
timm's ``byobnet.py`` (aa4b585; what its ``repvgg_*.rvgg_in1k`` weights
fit, train-time and ``reparameterize()``-d; timm has no B1g2, so B1g4) and
mmpretrain's ``RepVGG`` in an ``ImageClassifier`` (ee7f2e8; ``backbone.``
plus ``head.fc``). Each becomes a checkpoint file whose every tensor holds
its own index, which goes in through ``init_cfg=dict(type='Pretrained')``
as users load weights: layout detection, conversion and the strict load.
The index then shows that every source tensor landed where an independent
spelling of that project's naming says it belongs.
"""
import gzip
import json
import re
from pathlib import Path

import pytest
import torch

from mmseg_repvgg.checkpoint import detect_layout, load_pretrained
from mmseg_repvgg.models import RepVGG

TESTS = Path(__file__).resolve().parents[1]
MANIFESTS = TESTS / 'data' / 'checkpoint_manifests'
# Manifest -> (our arch, the layout detection must name).
CASES = {
    'official_RepVGG-A0-train': ('A0', 'official'),
    'official_RepVGG-A0-deploy': ('A0', 'official_deploy'),
    'official_RepVGG-B1g2-train': ('B1g2', 'official'),
    'timm_repvgg_a0-train': ('A0', 'timm'),
    'timm_repvgg_a0-deploy': ('A0', 'timm_deploy'),
    'timm_repvgg_b1g4-train': ('B1g4', 'timm'),
    'mmpretrain_A0-train': ('A0', 'mmpretrain'),
    'mmpretrain_A0-deploy': ('A0', 'mmpretrain_deploy'),
    'mmpretrain_B1g2-train': ('B1g2', 'mmpretrain'),
}
# Each project's classifier, dropped on import.
HEADS = {'official': 'linear.', 'timm': 'head.', 'mmpretrain': 'head.'}
# Each project's names -> ours, written out here rather than taken from
# mmseg_repvgg.checkpoint.layouts, so a wrong mapping there fails.
RENAMES = {
    'official': [(r'^stage0\.', 'stem.'), (r'\.rbr_dense\.', '.branch_3x3.'),
                 (r'\.rbr_1x1\.', '.branch_1x1.'),
                 (r'\.rbr_identity\.', '.branch_identity.'),
                 (r'\.rbr_reparam\.', '.branch_reparam.')],
    'timm': [(r'^stages\.(\d+)\.', lambda m: f'stage{int(m[1]) + 1}.'),
             (r'\.conv_kxk\.', '.branch_3x3.'),
             (r'\.conv_1x1\.', '.branch_1x1.'),
             (r'\.identity\.', '.branch_identity.'),
             (r'\.reparam_conv\.', '.branch_reparam.')],
    'mmpretrain': [(r'^backbone\.', ''), (r'^stage_(\d+)\.', r'stage\1.'),
                   (r'\.norm\.', '.bn.'),
                   (r'\.branch_norm\.', '.branch_identity.')],
}


def read_manifest(name: str) -> dict:
    with gzip.open(MANIFESTS / f'{name}.json.gz', 'rt') as f:
        return json.load(f)


def indexed_checkpoint(manifest: dict) -> dict:
    """Tensors of the manifest's shapes, the i-th filled with i.

    Each is one number expanded to its shape: saved, it takes one
    element's storage, so B-sized checkpoints cost no memory.
    """
    state = {}
    for i, (key, shape) in enumerate(manifest.items()):
        dtype = torch.long if key.endswith('num_batches_tracked') else None
        state[key] = torch.tensor(i, dtype=dtype or torch.float).expand(shape)
    return state


def our_key(project: str, key: str):
    """Our backbone key for a key of ``project``, None for its head."""
    if key.startswith(HEADS[project]):
        return None
    for pattern, repl in RENAMES[project]:
        key = re.sub(pattern, repl, key)
    return key


def test_every_manifest_has_a_case():
    on_disk = {p.name[:-len('.json.gz')] for p in MANIFESTS.glob('*.json.gz')}
    assert on_disk == set(CASES)


@pytest.mark.parametrize('name', CASES)
def test_real_layout_loads_strictly_where_it_belongs(name, tmp_path):
    arch, layout = CASES[name]
    project = name.split('_')[0]
    manifest = read_manifest(name)
    checkpoint = indexed_checkpoint(manifest)
    path = tmp_path / f'{name}.pth'
    torch.save(checkpoint, path)
    assert detect_layout(checkpoint) == layout

    deploy = layout.endswith('_deploy')
    model = RepVGG(
        arch,
        deploy=deploy,
        init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()  # raises on any missing/unexpected/mismatched key

    ours = model.state_dict()
    expected = {}  # our key -> (index, shape) of the source tensor
    for i, (key, shape) in enumerate(manifest.items()):
        if our_key(project, key) is not None:
            expected[our_key(project, key)] = (i, torch.Size(shape))
    # Only the head is dropped; the rest is exactly our backbone.
    assert len(expected) + 2 == len(manifest)
    assert set(expected) == set(ours)
    for key, (index, shape) in expected.items():
        assert ours[key].shape == shape
        assert (ours[key] == index).all(), f'{key} did not get tensor {index}'


@pytest.mark.parametrize('name',
                         [n for n, (arch, _) in CASES.items() if arch == 'A0'])
def test_real_layout_loads_into_the_other_form(name, tmp_path):
    """Train-time weights into a fused backbone and back."""
    arch, layout = CASES[name]
    path = tmp_path / f'{name}.pth'
    torch.save(indexed_checkpoint(read_manifest(name)), path)
    model = RepVGG(arch, deploy=not layout.endswith('_deploy'))
    assert load_pretrained(model, str(path)) == layout
    for key, value in model.state_dict().items():
        assert torch.isfinite(value.float()).all(), key
