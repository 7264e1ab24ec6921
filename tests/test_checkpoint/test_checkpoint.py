"""Pretrained weights of every RepVGG checkpoint layout, and the converter.

Each layout's checkpoint is made from a model of ours with random BN
statistics (``export_layout``), saved like the real files (classifier head,
wrappers), loaded through ``init_cfg=dict(type='Pretrained')`` and compared
with the source model's outputs in eval mode.
"""
import importlib.util
import os
import os.path as osp
import pathlib
import subprocess
import sys

import pytest
import torch

from mmseg_repvgg.checkpoint import (LAYOUTS, convert_to_ours, detect_layout,
                                     export_layout, load_pretrained,
                                     save_converted)
from mmseg_repvgg.checkpoint.digest import DIGEST_KEY, tensor_digest
from mmseg_repvgg.cli import run_cli
from mmseg_repvgg.errors import CheckpointError
from mmseg_repvgg.models import RepVGG, reparameterize_model

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TINY = dict(num_blocks=(1, 2, 2, 1), width_factor=(0.25, 0.25, 0.25, 0.25))
OTHER = dict(num_blocks=(1, 2, 2, 1), width_factor=(0.5, 0.25, 0.25, 0.25))
# Like B1g2: every even global block index is grouped.
GROUPED = dict(TINY, group_layer_map={2: 2, 4: 4})
HEADS = {
    'ours': {},
    'official': {
        'linear.weight': torch.zeros(10, 32),
        'linear.bias': torch.zeros(10)
    },
    'mmpretrain': {
        'head.fc.weight': torch.zeros(10, 32),
        'head.fc.bias': torch.zeros(10)
    },
    'timm': {
        'head.fc.weight': torch.zeros(10, 32),
        'head.fc.bias': torch.zeros(10)
    },
}


def randomize_bn(model, seed=0):
    """Non-trivial BN statistics and affines, so every branch matters."""
    gen = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.rand(n, generator=gen) - 0.5)
            module.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            module.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            module.bias.data.copy_(torch.rand(n, generator=gen) - 0.5)
    return model.eval()


@pytest.fixture(scope='module')
def sources():
    """A train-time model, its fused copy and an input; per arch."""
    torch.manual_seed(0)
    made = {}
    for name, arch in (('tiny', TINY), ('grouped', GROUPED)):
        model = randomize_bn(RepVGG(arch))
        made[name] = (arch, model, reparameterize_model(model))
    return made, torch.randn(2, 3, 32, 32)


def checkpoint_of(layout, train_model, fused_model):
    """What a file of ``layout`` holds: its keys plus a classifier head."""
    model = fused_model if layout.endswith('_deploy') else train_model
    state = export_layout(model.state_dict(), layout)
    state.update(HEADS[layout.replace('_deploy', '')])
    return state


def load_via_init_cfg(arch, path, deploy, **kwargs):
    model = RepVGG(
        arch,
        deploy=deploy,
        init_cfg=dict(type='Pretrained', checkpoint=str(path), **kwargs))
    model.init_weights()
    return model.eval()


def assert_same_outputs(model, reference, x):
    with torch.no_grad():
        outs, refs = model(x), reference(x)
    for out, ref in zip(outs, refs):
        torch.testing.assert_close(
            out, ref, rtol=1e-5, atol=1e-5 * ref.abs().max().item())


@pytest.mark.parametrize('deploy', [False, True], ids=['train', 'fused'])
@pytest.mark.parametrize('layout', LAYOUTS)
def test_every_layout_loads_into_train_and_fused_models(
        sources, tmp_path, layout, deploy):
    (arch, train_model, fused_model), x = sources[0]['tiny'], sources[1]
    path = tmp_path / f'{layout}.pth'
    torch.save(checkpoint_of(layout, train_model, fused_model), path)
    model = load_via_init_cfg(arch, path, deploy)
    assert model.deploy == deploy
    assert_same_outputs(model, train_model, x)
    assert load_pretrained(RepVGG(arch, deploy=deploy), path) == layout


@pytest.mark.parametrize('layout', ['official', 'official_deploy', 'timm'])
def test_grouped_arch_converts_both_ways(sources, tmp_path, layout):
    (arch, train_model, fused_model), x = sources[0]['grouped'], sources[1]
    path = tmp_path / 'grouped.pth'
    torch.save(checkpoint_of(layout, train_model, fused_model), path)
    for deploy in (False, True):
        model = load_via_init_cfg(arch, path, deploy)
        assert_same_outputs(model, train_model, x)


def test_official_wrapped_in_state_dict_with_module_prefix(sources, tmp_path):
    (arch, train_model, fused_model), x = sources[0]['tiny'], sources[1]
    state = checkpoint_of('official', train_model, fused_model)
    path = tmp_path / 'wrapped.pth'
    torch.save({'state_dict': {
        'module.' + k: v
        for k, v in state.items()
    }}, path)
    assert_same_outputs(load_via_init_cfg(arch, path, False), train_model, x)


def test_num_batches_tracked_may_be_absent(sources, tmp_path):
    (arch, train_model, fused_model), x = sources[0]['tiny'], sources[1]
    state = checkpoint_of('timm', train_model, fused_model)
    state = {k: v for k, v in state.items() if 'num_batches' not in k}
    path = tmp_path / 'timm_no_counter.pth'
    torch.save(state, path)
    for deploy in (False, True):
        model = load_via_init_cfg(arch, path, deploy)
        assert_same_outputs(model, train_model, x)


def test_backbone_out_of_a_whole_segmentor_checkpoint(sources, tmp_path):
    (arch, train_model, _), x = sources[0]['tiny'], sources[1]
    state = {'backbone.' + k: v for k, v in train_model.state_dict().items()}
    state['decode_head.conv_seg.weight'] = torch.zeros(19, 8, 1, 1)
    path = tmp_path / 'segmentor.pth'
    torch.save({'state_dict': state, 'meta': {'epoch': 3}}, path)
    model = load_via_init_cfg(arch, path, False, prefix='backbone.')
    assert_same_outputs(model, train_model, x)
    with pytest.raises(CheckpointError, match="prefix 'neck.'"):
        load_via_init_cfg(arch, path, False, prefix='neck.')


def test_real_arch_key_coverage(tmp_path):
    """A0: stem of 48 channels, identity branches, every layout's names."""
    model = randomize_bn(RepVGG('A0'))
    fused = reparameterize_model(model)
    for layout in ('official', 'mmpretrain_deploy', 'timm'):
        path = tmp_path / f'a0_{layout}.pth'
        torch.save(checkpoint_of(layout, model, fused), path)
        target = RepVGG('A0', deploy=layout.endswith('_deploy'))
        assert load_pretrained(target, path) == layout
        source = fused if layout.endswith('_deploy') else model
        for key, value in source.state_dict().items():
            assert torch.equal(target.state_dict()[key], value), key


def test_timm_and_official_key_names():
    model = RepVGG(TINY)
    timm = export_layout(model.state_dict(), 'timm')
    official = export_layout(model.state_dict(), 'official')
    assert 'stem.conv_kxk.conv.weight' in timm
    assert 'stages.1.1.identity.running_var' in timm
    assert 'stages.3.0.conv_1x1.bn.bias' in timm
    assert 'stage0.rbr_dense.bn.running_mean' in official
    assert 'stage2.1.rbr_identity.weight' in official
    assert 'stage4.0.rbr_1x1.conv.weight' in official
    fused = export_layout(
        reparameterize_model(model).state_dict(), 'official_deploy')
    assert {'stage0.rbr_reparam.weight',
            'stage3.1.rbr_reparam.bias'} <= set(fused)


@pytest.mark.parametrize('layout', LAYOUTS)
def test_export_then_convert_round_trip(sources, layout):
    _, train_model, fused_model = sources[0]['tiny']
    model = fused_model if layout.endswith('_deploy') else train_model
    exported = export_layout(model.state_dict(), layout)
    assert detect_layout(exported) == layout
    back = convert_to_ours(exported, model)
    assert back.keys() == model.state_dict().keys()
    assert all(torch.equal(back[k], v) for k, v in model.state_dict().items())


def test_another_arch_names_keys_and_shapes(sources, tmp_path):
    _, train_model, _ = sources[0]['tiny']
    path = tmp_path / 'tiny.pth'
    torch.save(export_layout(train_model.state_dict(), 'official'), path)
    with pytest.raises(CheckpointError) as info:
        load_via_init_cfg(OTHER, path, False)
    message = str(info.value)
    assert str(path) in message and 'official' in message
    assert 'stem.branch_3x3.conv.weight (checkpoint [16, 3, 3, 3], model ' \
        '[32, 3, 3, 3])' in message
    assert 'another arch' in message
    with pytest.raises(CheckpointError, match='other shapes'):
        load_via_init_cfg(OTHER, path, True)  # through the fusing path


def test_named_arch_mismatch_says_which_arch(tmp_path):
    path = tmp_path / 'a0.pth'
    torch.save(export_layout(RepVGG('A0').state_dict(), 'timm'), path)
    with pytest.raises(CheckpointError, match=r'RepVGG-A0.*model is A1'):
        load_pretrained(RepVGG('A1'), path)


def test_missing_blocks_are_reported(sources, tmp_path):
    _, train_model, _ = sources[0]['tiny']
    state = export_layout(train_model.state_dict(), 'timm')
    state = {k: v for k, v in state.items() if not k.startswith('stages.2.1')}
    path = tmp_path / 'short.pth'
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r'missing: stage3\.1\.'):
        load_pretrained(RepVGG(TINY), path)
    fused = export_layout(
        reparameterize_model(train_model).state_dict(), 'official_deploy')
    del fused['stage3.1.rbr_reparam.bias']
    torch.save(fused, path)
    for deploy in (False, True):
        with pytest.raises(CheckpointError, match=r'stage3\.1\.'):
            load_pretrained(RepVGG(TINY, deploy=deploy), path)


def test_missing_file_says_where_to_get_weights(tmp_path):
    with pytest.raises(CheckpointError) as info:
        load_via_init_cfg('B2', tmp_path / 'repvgg_b2.pth', False)
    message = str(info.value)
    # The conversion writes the file the model was told to read.
    for hint in ('not found', 'RepVGG-B2-train.pth', 'DingXiaoH/RepVGG',
                 "'mmpretrain://repvgg-B2'", "'timm://repvgg_b2.rvgg_in1k'",
                 'python tools/convert_checkpoint.py '
                 f'SRC {tmp_path / "repvgg_b2.pth"} --arch B2'):
        assert hint in message


def test_unknown_and_se_layouts_are_refused():
    with pytest.raises(CheckpointError) as info:
        detect_layout({
            'conv1.weight': torch.zeros(1),
            'fc.bias': torch.zeros(1)
        })
    assert 'conv1.weight' in str(info.value)
    assert all(name in str(info.value) for name in LAYOUTS)
    d2se = export_layout(RepVGG(TINY).state_dict(), 'official')
    d2se['stage1.0.se.down.weight'] = torch.zeros(1)
    with pytest.raises(CheckpointError, match='D2se'):
        detect_layout(d2se)


def test_export_deploy_needs_fused_state():
    with pytest.raises(CheckpointError, match='switch_to_deploy'):
        export_layout(RepVGG(TINY).state_dict(), 'timm_deploy')


class _Payload:
    """A pickle that would create a file when loaded unsafely."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker), ))


def test_malicious_pickle_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / 'pwned'
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {'stem.x': _Payload(str(marker))}}, path)
    with pytest.raises(CheckpointError, match='refused'):
        load_via_init_cfg(TINY, path, False)
    assert not marker.exists()


def test_safetensors_file(sources, tmp_path):
    safetensors_torch = pytest.importorskip('safetensors.torch')
    (arch, train_model, fused_model), x = sources[0]['tiny'], sources[1]
    state = checkpoint_of('timm', train_model, fused_model)
    path = tmp_path / 'model.safetensors'
    safetensors_torch.save_file({
        k: v.contiguous()
        for k, v in state.items()
    }, str(path))
    assert_same_outputs(load_via_init_cfg(arch, path, True), train_model, x)
    path.write_bytes(b'garbage')
    with pytest.raises(CheckpointError, match='safetensors'):
        load_via_init_cfg(arch, path, True)


def test_save_converted_is_atomic(tmp_path):
    dst = tmp_path / 'out' / 'w.pth'
    save_converted({'a': torch.ones(2)}, str(dst), {'arch': 'B2'})
    saved = torch.load(dst, weights_only=True)
    assert saved['meta'] == {'arch': 'B2', DIGEST_KEY: tensor_digest(saved)}

    def refuse(path):
        raise CheckpointError('bad')

    with pytest.raises(CheckpointError):
        save_converted({'a': torch.zeros(2)}, str(dst), verify=refuse)
    assert torch.equal(
        torch.load(dst, weights_only=True)['state_dict']['a'], torch.ones(2))
    assert os.listdir(dst.parent) == ['w.pth']


def run_tool(*args):
    env = dict(os.environ, OMP_NUM_THREADS='1')
    return subprocess.run(
        [sys.executable, 'tools/convert_checkpoint.py', *map(str, args)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120)


def test_convert_tool_round_trip_and_failure(sources, tmp_path):
    (_, train_model, fused_model), x = sources[0]['tiny'], sources[1]
    src = tmp_path / 'RepVGG-tiny-train.pth'
    torch.save({'state_dict': checkpoint_of('official', train_model, None)},
               src)
    dst = tmp_path / 'ckpt' / 'tiny.pth'
    arch = '{"num_blocks": [1, 2, 2, 1], "width_factor": [0.25, 0.25, ' \
        '0.25, 0.25]}'
    done = run_tool(src, dst, '--arch', arch, '--deploy')
    assert done.returncode == 0, done.stderr
    assert 'official layout' in done.stdout
    assert f'{len(fused_model.state_dict())} tensors' in done.stdout
    saved = torch.load(dst, weights_only=True)
    assert saved['meta']['source_layout'] == 'official'
    assert detect_layout(saved) == 'ours_deploy'
    assert_same_outputs(load_via_init_cfg(TINY, dst, True), train_model, x)

    before = dst.read_bytes()
    failed = run_tool(src, dst, '--arch', 'A0')
    assert failed.returncode == 2
    assert failed.stderr.startswith('error: ')
    assert len(failed.stderr.strip().splitlines()) == 1
    assert dst.read_bytes() == before
    assert os.listdir(dst.parent) == ['tiny.pth']


def test_convert_tool_reports_user_errors_in_one_line(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location(
        'convert_checkpoint', osp.join(REPO, 'tools', 'convert_checkpoint.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    dst = tmp_path / 'new.pth'
    argv = [str(tmp_path / 'nope.pth'), str(dst), '--arch', 'B2']
    assert run_cli(tool.main, argv) == 2
    err = capsys.readouterr().err
    assert err.startswith('error: ') and 'convert_checkpoint.py' in err
    assert len(err.strip().splitlines()) == 1
    assert run_cli(tool.main, [argv[0], str(dst), '--arch', '{bad']) == 2
    assert 'not valid JSON' in capsys.readouterr().err
    assert not dst.exists()
