"""tools/train_benchmark.py's pieces: the paper's mIoU, the batch, the
table (the measuring itself runs in the GPU check's dry run)."""
import subprocess
import sys
from pathlib import Path

import torch

from mmseg_repvgg.benchmark.training import (PAPER_CONFIGS, paper_miou,
                                             render_table, synthetic_batch)

REPO = Path(__file__).resolve().parents[2]


def test_paper_miou_of_the_six_configs():
    found = paper_miou(str(REPO / 'configs' / 'metafile.yml'))
    names = [Path(config).stem for _, config in PAPER_CONFIGS]
    assert [found[name]
            for name in names] == [78.88, 78.70, 79.52, 80.57, 77.17, 78.51]


def test_synthetic_batch_is_a_dataloader_batch():
    data = synthetic_batch(2, (8, 16), 19, seed=0)
    assert [x.shape for x in data['inputs']] == [(3, 8, 16)] * 2
    assert data['inputs'][0].dtype == torch.uint8
    labels = data['data_samples'][1].gt_sem_seg.data
    assert labels.shape == (1, 8, 16) and int(labels.max()) < 19
    assert data['data_samples'][0].img_shape == (8, 16)


def _results(dry_run):
    return dict(
        machine='NVIDIA H200, torch 2.11',
        dry_run=dry_run,
        settings=dict(
            crop=(512, 1024),
            batch=2,
            warmup=2,
            iters=6,
            infer_shape=(1024, 2048)),
        rows=[
            dict(
                name='B1g2-fast',
                paper_miou=78.88,
                train=dict(
                    fp32=dict(
                        s_per_iter=0.25,
                        peak_mb=6144.0,
                        method='torch.cuda.max_memory_allocated'),
                    amp=dict(error='RuntimeError: boom')),
                inference=dict(fps=20.0)),
            dict(
                name='R50-D8',
                paper_miou=None,
                train=dict(fp32=dict(s_per_iter=0.3, peak_mb=None)),
                skips=dict(amp='AMP training needs CUDA'),
                inference=dict(error='x')),
        ])


def test_table_names_the_machine_and_marks_a_dry_run(tmp_path):
    lines = render_table(_results(dry_run=False))
    assert 'on NVIDIA H200, torch 2.11.' in lines[0]
    assert 'torch.cuda.max_memory_allocated' in lines[0]
    assert lines[4] == ('| B1g2-fast | 78.88 | 0.250 | failed | 6.00 | '
                        'failed | 20.00 |')
    assert lines[5] == '| R50-D8 | — | 0.300 | skipped | — | skipped | ' \
        'failed |'
    dry = render_table(_results(dry_run=True))
    assert dry[0].endswith('(dry run).')
    assert dry[4].startswith('| B1g2-fast (dry run) | 78.88 |')
    # A saved run renders again; a file that is not one is one error line.
    saved = tmp_path / 'run.json'
    saved.write_text('{"rows": 1}')
    proc = subprocess.run(
        [sys.executable, 'tools/train_benchmark.py', '--render',
         str(saved)],
        cwd=REPO,
        capture_output=True,
        text=True)
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(err) == 1
    assert err[0].startswith(f'error: --render {saved}: not a saved')


def test_profile_step_splits_a_training_step():
    import torch
    from torch import nn

    from mmseg_repvgg.benchmark.training import profile_step
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8))
    optim = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(2, 3, 16, 16)

    def step():
        optim.zero_grad()
        model(x).square().mean().backward()
        optim.step()

    result = profile_step(step, 'cpu', top=3)
    assert result['conv_ms'] > 0 and result['batch_norm_ms'] > 0
    assert result['optimizer_ms'] > 0
    parts = result['conv_ms'] + result['batch_norm_ms']
    assert result['all_ms'] >= parts * 0.5  # own times sum to the step
    assert len(result['top_ops']) == 3
