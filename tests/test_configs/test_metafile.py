"""configs/metafile.yml: complete, pointing at real configs, honest numbers.

The metafile is mmseg's model index for this project's configs; a config
added without an entry, an entry left behind by a renamed config, or a
paper number mistyped (or passed off as our own) fails here.
"""
import math
from pathlib import Path

import pytest
import yaml
from mmengine.config import Config

REPO = Path(__file__).resolve().parents[2]
METAFILE = REPO / 'configs' / 'metafile.yml'
# PAPER.md, "Cityscapes, PSPNet (section 4.3)": the val mIoU the paper
# reports per backbone, keyed by the config that trains that model.
PAPER_MIOU = {
    'pspnet_r50-d8_paper_cityscapes': 77.17,
    'pspnet_repvgg_b1g2_fast_cityscapes': 78.88,
    'pspnet_repvgg_b1g2_cityscapes': 78.70,
    'pspnet_r101-d8_paper_cityscapes': 78.51,
    'pspnet_repvgg_b2_fast_cityscapes': 79.52,
    'pspnet_repvgg_b2_cityscapes': 80.57,
}
CITYSCAPES_TRAIN_IMAGES = 2975
TOY_TRAIN_IMAGES = 64  # make_toy_cityscapes' default


@pytest.fixture(scope='module')
def metafile() -> dict:
    with open(METAFILE) as f:
        return yaml.safe_load(f)


@pytest.fixture(scope='module')
def models(metafile) -> dict:
    return {model['Name']: model for model in metafile['Models']}


def test_entries_are_well_formed(metafile, models):
    assert len(models) == len(metafile['Models']), 'duplicate names'
    collections = {c['Name'] for c in metafile['Collections']}
    for collection in metafile['Collections']:
        assert collection['Paper']['URL'].startswith('https://arxiv.org/')
        assert collection['Code']['URL'].startswith('https://github.com/')
    for name, model in models.items():
        assert model['In Collection'] in collections, name
        # mmseg's convention: a model is named after its config file.
        assert Path(model['Config']).stem == name
        for key in ('backbone', 'crop size', 'lr schd', 'Training Data'):
            assert key in model['Metadata'], (name, key)
        assert model['Paper']['URL'].startswith('https://arxiv.org/')
        code = model['Code']
        assert code.startswith('https://') or (REPO / code).is_file(), name
        # No trained weights are published.
        assert model.get('Weights') is None, name


def test_every_config_is_listed_and_every_entry_exists(models):
    listed = [model['Config'] for model in models.values()]
    for path in listed:
        assert (REPO / path).is_file(), f'{path} does not exist'
    on_disk = sorted(
        str(p.relative_to(REPO)) for p in (REPO / 'configs').glob('*.py'))
    assert sorted(listed) == on_disk


def test_results_are_the_papers_and_say_so(models):
    with_results = {
        name: model
        for name, model in models.items() if 'Results' in model
    }
    assert set(with_results) == set(PAPER_MIOU)
    for name, model in with_results.items():
        results = model['Results']
        assert results['Dataset'] == 'Cityscapes'
        assert results['Task'] == 'Semantic Segmentation'
        assert results['Metrics']['mIoU'] == pytest.approx(
            PAPER_MIOU[name], abs=1e-9)
        assert 'paper' in results['Source']
        assert 'not reproduced' in results['Source']


@pytest.mark.parametrize(
    'name', sorted(p.stem for p in (REPO / 'configs').glob('*.py')))
def test_metadata_matches_the_config(models, name):
    meta = models[name]['Metadata']
    cfg = Config.fromfile(str(REPO / models[name]['Config']))
    assert meta['crop size'] == '({},{})'.format(*cfg.crop_size)
    batch = cfg.num_gpus * cfg.train_dataloader.batch_size
    assert meta['Batch Size'] == batch
    toy = 'toy' in name
    images = TOY_TRAIN_IMAGES if toy else CITYSCAPES_TRAIN_IMAGES
    iterations = cfg.train_cfg.max_epochs * math.ceil(images / batch)
    assert meta['lr schd'] == iterations
    assert ('toy' in meta['Training Data']) == toy
    backbone = cfg.model.backbone
    if backbone.type == 'RepVGG':
        arch = 'toy' if isinstance(backbone.arch, dict) else backbone.arch
        output_stride_8 = tuple(backbone.strides) == (2, 2, 1, 1)
        expected = f'RepVGG-{arch}' + '-D8' * output_stride_8
        expected += '-fast' * (backbone.get('dilated_blocks') is not None)
    else:
        expected = f'R-{backbone.depth}-D8'
    assert meta['backbone'] == expected
    assert expected in meta['Architecture']
