"""RepVGG backbone (Ding et al., CVPR 2021) for semantic segmentation."""
from typing import Dict, Optional, Sequence

from mmengine.model import BaseModule
from mmseg.registry import MODELS, WEIGHT_INITIALIZERS
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from ...errors import ConfigError
from .repvgg_block import RepVGGBlock

# The g2/g4 variants group the even blocks, counted from 1 after the stem
# (the official code's optional_groupwise_layers).
GROUPWISE_LAYERS = tuple(range(2, 27, 2))
G2_MAP = {layer: 2 for layer in GROUPWISE_LAYERS}
G4_MAP = {layer: 4 for layer in GROUPWISE_LAYERS}

# init_cfg types that load a RepVGG checkpoint of any layout.
PRETRAINED_TYPES = ('RepVGGPretrained', 'Pretrained')

A_BLOCKS = (2, 4, 14, 1)
B_BLOCKS = (4, 6, 16, 1)


@MODELS.register_module()
class RepVGG(BaseModule):
    """RepVGG backbone with per-stage dilation for segmentation.

    A stride-2 stem, four stages; for output stride 8 the paper dilates
    the last two stages, every block ("full") or the last ones ("fast")::

        full: strides=(2, 2, 1, 1), dilations=(1, 1, 2, 4)
        fast: the same plus dilated_blocks=(0, 0, 4, 1)

    Args:
        arch (str | dict): A key of ``arch_settings`` or such a dict.
        in_channels (int): Input image channels.
        base_channels (int): Stage i: base_channels * 2**i * width_factor[i].
        strides (Sequence[int]): Stride of each of the four stages.
        dilations (Sequence[int]): Dilation of each stage.
        dilated_blocks (Sequence[int], optional): Dilated blocks per stage.
        out_indices (Sequence[int]): Stages (0-3) whose outputs are returned.
        frozen_stages (int): Freeze the stem (0) and stages up to this one.
        norm_cfg (dict): Norm config.
        act_cfg (dict): Activation config.
        norm_eval (bool): Keep BN layers in eval mode while training.
        with_cp (bool): Activation checkpointing.
        deploy (bool): Build fused blocks directly.
        init_cfg (dict | list[dict], optional): Init config (RepVGGPretrained).
    """

    # yapf: disable
    arch_settings = {
        'A0': dict(num_blocks=A_BLOCKS, width_factor=(0.75, 0.75, 0.75, 2.5)),
        'A1': dict(num_blocks=A_BLOCKS, width_factor=(1, 1, 1, 2.5)),
        'A2': dict(num_blocks=A_BLOCKS, width_factor=(1.5, 1.5, 1.5, 2.75)),
        'B0': dict(num_blocks=B_BLOCKS, width_factor=(1, 1, 1, 2.5)),
        'B1': dict(num_blocks=B_BLOCKS, width_factor=(2, 2, 2, 4)),
        'B1g2': dict(num_blocks=B_BLOCKS, width_factor=(2, 2, 2, 4),
                     group_layer_map=G2_MAP),
        'B1g4': dict(num_blocks=B_BLOCKS, width_factor=(2, 2, 2, 4),
                     group_layer_map=G4_MAP),
        'B2': dict(num_blocks=B_BLOCKS, width_factor=(2.5, 2.5, 2.5, 5)),
        'B2g2': dict(num_blocks=B_BLOCKS, width_factor=(2.5, 2.5, 2.5, 5),
                     group_layer_map=G2_MAP),
        'B2g4': dict(num_blocks=B_BLOCKS, width_factor=(2.5, 2.5, 2.5, 5),
                     group_layer_map=G4_MAP),
        'B3': dict(num_blocks=B_BLOCKS, width_factor=(3, 3, 3, 5)),
        'B3g2': dict(num_blocks=B_BLOCKS, width_factor=(3, 3, 3, 5),
                     group_layer_map=G2_MAP),
        'B3g4': dict(num_blocks=B_BLOCKS, width_factor=(3, 3, 3, 5),
                     group_layer_map=G4_MAP),
    }
    # yapf: enable

    def __init__(self,
                 arch='B1g2',
                 in_channels: int = 3,
                 base_channels: int = 64,
                 strides: Sequence[int] = (2, 2, 2, 2),
                 dilations: Sequence[int] = (1, 1, 1, 1),
                 dilated_blocks: Optional[Sequence[int]] = None,
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 frozen_stages: int = -1,
                 norm_cfg: Dict = dict(type='BN', requires_grad=True),
                 act_cfg: Dict = dict(type='ReLU'),
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 deploy: bool = False,
                 init_cfg=None):
        super().__init__(init_cfg)
        self.arch = self._resolve_arch(arch)
        num_blocks = self.arch['num_blocks']
        if dilated_blocks is None:
            dilated_blocks = tuple(num_blocks)
        self._check_stage_args(num_blocks, strides, dilations, dilated_blocks,
                               out_indices, frozen_stages)
        self.strides = tuple(strides)
        self.dilations = tuple(dilations)
        self.dilated_blocks = tuple(dilated_blocks)
        self.out_indices = tuple(out_indices)
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.deploy = deploy
        block_cfg = dict(
            norm_cfg=norm_cfg, act_cfg=act_cfg, with_cp=with_cp, deploy=deploy)
        widths = [
            int(base_channels * 2**i * factor)
            for i, factor in enumerate(self.arch['width_factor'])
        ]
        # The stem is capped at 64 channels (the paper's min(64, 64a)).
        self.stem_channels = min(base_channels, widths[0])
        self.stem = RepVGGBlock(
            in_channels, self.stem_channels, stride=2, **block_cfg)
        group_map = self.arch.get('group_layer_map') or {}
        layer_idx = 1
        channels = self.stem_channels
        self.stage_names = []
        for i, (blocks, width) in enumerate(zip(num_blocks, widths)):
            first_dilated = blocks - self.dilated_blocks[i]
            stage = []
            for j in range(blocks):
                stride = self.strides[i] if j == 0 else 1
                dilation = self.dilations[i] if j >= first_dilated else 1
                groups = group_map.get(layer_idx, 1)
                stage.append(
                    RepVGGBlock(channels, width, stride, dilation, groups,
                                **block_cfg))
                channels = width
                layer_idx += 1
            name = f'stage{i + 1}'
            self.add_module(name, nn.Sequential(*stage))
            self.stage_names.append(name)
        self.out_channels = [widths[i] for i in self.out_indices]
        self._freeze_stages()

    @classmethod
    def _resolve_arch(cls, arch) -> Dict:
        if isinstance(arch, str):
            if arch not in cls.arch_settings:
                raise ConfigError(
                    f'unknown RepVGG arch {arch!r}; choose one of '
                    f'{", ".join(cls.arch_settings)} or pass a dict with '
                    'num_blocks and width_factor')
            return dict(cls.arch_settings[arch])
        if not isinstance(arch, dict):
            raise ConfigError(f'arch must be a str or dict, got {type(arch)}')
        missing = {'num_blocks', 'width_factor'} - set(arch)
        if missing:
            raise ConfigError(
                f'custom RepVGG arch is missing {sorted(missing)}; it needs '
                'num_blocks (4 ints) and width_factor (4 floats)')
        if len(arch['num_blocks']) != 4 or len(arch['width_factor']) != 4:
            raise ConfigError('custom RepVGG arch needs 4 num_blocks and 4 '
                              f'width_factor values, got {arch}')
        return dict(arch)

    @staticmethod
    def _check_stage_args(num_blocks, strides, dilations, dilated_blocks,
                          out_indices, frozen_stages) -> None:
        for name, values in (('strides', strides), ('dilations', dilations),
                             ('dilated_blocks', dilated_blocks)):
            if len(values) != 4:
                raise ConfigError(
                    f'{name} needs one value per stage (4), got {values}')
        if any(s < 1 for s in strides) or any(d < 1 for d in dilations):
            raise ConfigError('strides and dilations must be >= 1, got '
                              f'strides={strides}, dilations={dilations}')
        for i, (n, blocks) in enumerate(zip(dilated_blocks, num_blocks)):
            if not 0 <= n <= blocks:
                raise ConfigError(
                    f'dilated_blocks[{i}]={n} is impossible: stage {i} has '
                    f'{blocks} blocks, so use 0..{blocks}')
        if not out_indices or any(i not in range(4) for i in out_indices):
            raise ConfigError(
                f'out_indices must index the stages 0-3, got {out_indices}')
        if frozen_stages not in range(-1, 5):
            raise ConfigError(
                f'frozen_stages must be -1..4, got {frozen_stages}')

    def forward(self, x: Tensor):
        x = self.stem(x)
        outs = []
        for i, name in enumerate(self.stage_names):
            x = getattr(self, name)(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)

    def _freeze_stages(self) -> None:
        frozen = [self.stem] if self.frozen_stages >= 0 else []
        frozen += [
            getattr(self, name)
            for name in self.stage_names[:max(self.frozen_stages, 0)]
        ]
        for module in frozen:
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True):
        """Train mode, but frozen stages and (norm_eval) BNs stay in eval."""
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for module in self.modules():
                if isinstance(module, _BatchNorm):
                    module.eval()
        return self

    def init_weights(self) -> None:
        """Load pretrained weights of any layout strictly (``'Pretrained'``
        too, which would keep random weights), or initialize."""
        cfg = self.init_cfg
        if isinstance(cfg, dict) and cfg.get('type') in PRETRAINED_TYPES:
            init = WEIGHT_INITIALIZERS.build(
                dict(cfg, type='RepVGGPretrained'))
            init(self)
            self._is_init = True
            return
        super().init_weights()

    def switch_to_deploy(self) -> None:
        """Fuse every block in place (idempotent)."""
        for module in self.modules():
            if isinstance(module, RepVGGBlock):
                module.switch_to_deploy()
        self.deploy = True
