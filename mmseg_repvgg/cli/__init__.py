"""What the tools do before the Runner runs: mmseg's tools' steps, each
checking its input, so a wrong path or option stops at once in one line."""
import argparse
import logging
import os
import os.path as osp
import sys
from typing import Optional

from mmengine.config import Config
from mmengine.device import get_device
from mmengine.logging import print_log
from mmengine.runner import Runner
from mmseg.registry import RUNNERS

from ..checkpoint.safe_load import refuse_directory, route_checkpoint_loading
from ..config import load_config  # noqa: F401  (the tools import it here)
from ..errors import CheckpointError, ConfigError, Interrupted, UserError
from .args import CfgOptions, add_cfg_options  # noqa: F401
from .cpu_dist import setup_cpu_distributed
from .noise import filter_third_party_noise
from .outputs import check_output_dir

INTERRUPTED = 130  # 128 + SIGINT, as shells use


def run_cli(main, argv=None) -> int:
    """Run a tool's ``main(argv)``: a UserError is one ``error:`` line and
    exit 2, Ctrl-C one line and exit 130; a bug keeps its traceback."""
    filter_third_party_noise()  # so a failure's first line is its error
    try:
        return main(argv) or 0
    except UserError as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:
        kept = f'; {err}' if isinstance(err, Interrupted) else ''
        print(f'interrupted (Ctrl-C){kept}', file=sys.stderr)
        return INTERRUPTED


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """Add the options both tools share (mmseg's names and meanings)."""
    parser.add_argument(
        '--work-dir',
        help='directory for logs and checkpoints (default: the config\'s '
        'work_dir, else ./work_dirs/CONFIG_NAME)')
    add_cfg_options(parser)
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher (dist_*.sh and slurm_*.sh set it)')
    # torch.distributed.launch passes it; torchrun sets LOCAL_RANK instead.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def set_local_rank(local_rank: int) -> None:
    """Export LOCAL_RANK for mmengine unless a launcher did."""
    os.environ.setdefault('LOCAL_RANK', str(local_rank))


def set_work_dir(cfg: Config, work_dir: Optional[str],
                 config_path: str) -> str:
    """Set ``cfg.work_dir`` (``--work-dir``, else the config's, else
    work_dirs/CONFIG_NAME), checked writable, and return it."""
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir', None) is None:
        name = osp.splitext(osp.basename(config_path))[0]
        cfg.work_dir = osp.join('./work_dirs', name)
    check_output_dir(cfg.work_dir, 'work dir')
    return cfg.work_dir


def enable_amp(cfg: Config) -> None:
    """Train with mixed precision (mmengine's AmpOptimWrapper)."""
    if get_device() == 'cpu':
        raise ConfigError(
            '--amp needs a GPU (mmengine\'s AmpOptimWrapper has no CPU '
            'mode); drop --amp on this machine')
    wrapper = cfg.optim_wrapper.get('type', 'OptimWrapper')
    if wrapper == 'AmpOptimWrapper':
        print_log(
            'AMP training is already enabled in the config.',
            logger='current',
            level=logging.WARNING)
        return
    if wrapper != 'OptimWrapper':
        raise ConfigError(
            f'--amp switches OptimWrapper to AmpOptimWrapper, but the config '
            f'uses {wrapper}; set its AMP options in the config instead')
    cfg.optim_wrapper.type = 'AmpOptimWrapper'
    cfg.optim_wrapper.loss_scale = 'dynamic'


def enable_auto_scale_lr(cfg: Config) -> None:
    """Scale the lr by the real global batch over the config's base."""
    if 'base_batch_size' not in cfg.get('auto_scale_lr', {}):
        raise ConfigError(
            '--auto-scale-lr needs auto_scale_lr = dict(enable=False, '
            'base_batch_size=N) in the config (N: the global batch its lr '
            'is meant for)')
    cfg.auto_scale_lr.enable = True


def set_resume(cfg: Config, resume: Optional[str]) -> None:
    """Resume from ``--resume``: 'auto' (the latest) or a checkpoint."""
    if resume is None:
        return
    cfg.resume = True
    if resume != 'auto':
        check_checkpoint(resume)
        cfg.load_from = resume


def check_checkpoint(path: str) -> None:
    """Refuse a checkpoint path that is missing, a directory or a config."""
    refuse_directory(path)
    if path.endswith('.py'):
        raise CheckpointError(
            f'{path} is a config, not a checkpoint; the config comes first '
            '(tools/test.py CONFIG CHECKPOINT)')
    if not osp.isfile(path):
        raise CheckpointError(
            f'checkpoint file not found: {path}; train first '
            '(tools/train.py CONFIG writes WORK_DIR/epoch_N.pth, '
            'best_mIoU_*.pth and deploy_final.pth) or pass an existing file')


def enable_visualization(cfg: Config, show: bool, show_dir: Optional[str],
                         wait_time: float) -> None:
    """Draw test predictions beside their ground truth (``--show-dir``)."""
    hook = cfg.get('default_hooks', {}).get('visualization')
    if hook is None:
        raise ConfigError(
            '--show/--show-dir need default_hooks.visualization = '
            "dict(type='SegVisualizationHook') in the config")
    hook.draw = True
    if show:
        hook.show = True
        hook.wait_time = wait_time
    if show_dir:
        check_output_dir(show_dir, '--show-dir')
        cfg.visualizer.save_dir = show_dir


def enable_tta(cfg: Config) -> None:
    """Test with test-time augmentation (mmseg's SegTTAModel)."""
    if 'tta_pipeline' not in cfg or 'tta_model' not in cfg:
        raise ConfigError(
            '--tta needs tta_pipeline and tta_model in the config (mmseg\'s '
            'dataset and runtime bases define them)')
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
    cfg.tta_model.module = cfg.model
    cfg.model = cfg.tta_model


def set_output_dir(cfg: Config, out: str) -> None:
    """Save the predicted label maps as PNGs for offline evaluation."""
    check_output_dir(out, '--out')
    cfg.test_evaluator['output_dir'] = out
    cfg.test_evaluator['keep_results'] = True


def build_runner(cfg: Config, launcher: str) -> Runner:
    """Build the Runner from the complete config, loading checkpoints
    through ``safe://`` and preparing CPU-only distributed runs."""
    route_checkpoint_loading(cfg)
    cfg.launcher = launcher
    setup_cpu_distributed(cfg, launcher)
    if 'runner_type' in cfg:
        return RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)
