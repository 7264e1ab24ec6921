"""The RepVGG checkpoint layouts in circulation and their key mapping."""
import re
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

from torch import Tensor

from ..errors import CheckpointError

_BN = ('weight', 'bias', 'running_mean', 'running_var', 'num_batches_tracked')
# Our branch prefixes and the tensor names each may hold.
BRANCH_TENSORS = {
    'branch_3x3.conv.': ('weight', ),
    'branch_3x3.bn.': _BN,
    'branch_1x1.conv.': ('weight', ),
    'branch_1x1.bn.': _BN,
    'branch_identity.': _BN,
    'branch_reparam.': ('weight', 'bias'),
}
FUSED_PREFIX = 'branch_reparam.'
# RepVGG-D2se's squeeze-excitation (timm's attn has no keys in plain RepVGGs).
_SE_PATTERN = re.compile(r'(^|\.)(se|se_layer|attn)\.')

Block = Tuple


@dataclass(frozen=True)
class Layout:
    """How one codebase names RepVGG blocks and their branches."""

    name: str  # train-time; the fused layout adds _deploy
    stem: str  # the stem block
    stage: str  # a stage's name before its number (stage, stages.)
    first_stage: int  # the number this codebase gives our stage 1
    branches: Dict[str, str] = field(hash=False)  # ours -> its prefixes
    heads: Tuple[str, ...] = ()  # classifier key prefixes, dropped on import
    wrapper: str = ''  # the backbone's key prefix in whole-model files

    def split(self, key: str) -> Tuple[Optional[Block], Optional[str]]:
        """Split a key into (block, our branch key), or (None, None)."""
        if key.startswith(self.stem + '.'):
            block, rest = ('stem', ), key[len(self.stem) + 1:]
        else:
            match = re.fullmatch(rf'{re.escape(self.stage)}(\d+)\.(\d+)\.(.+)',
                                 key)
            stage = int(match.group(1)) - self.first_stage + 1 if match else 0
            if not 1 <= stage <= 4:
                return None, None
            block, rest = (stage, int(match.group(2))), match.group(3)
        for ours, theirs in self.branches.items():
            if (rest.startswith(theirs)
                    and rest[len(theirs):] in BRANCH_TENSORS[ours]):
                return block, ours + rest[len(theirs):]
        return None, None

    def join(self, block: Block, branch_key: str) -> str:
        """The key of ``branch_key`` (our names) of ``block`` here."""
        for ours, theirs in self.branches.items():
            if branch_key.startswith(ours):
                rest = theirs + branch_key[len(ours):]
                break
        else:
            raise KeyError(f'not a RepVGG branch key: {branch_key}')
        if block == ('stem', ):
            return f'{self.stem}.{rest}'
        stage, index = block
        return f'{self.stage}{stage - 1 + self.first_stage}.{index}.{rest}'


def _branches(prefixes: str) -> Dict[str, str]:
    """Ours -> a layout's branch prefixes, given in BRANCH_TENSORS' order."""
    return dict(zip(BRANCH_TENSORS, prefixes.split()))


OURS = Layout('ours', 'stem', 'stage', 1, {p: p for p in BRANCH_TENSORS})
OFFICIAL = Layout(
    'official', 'stage0', 'stage', 1,
    _branches('rbr_dense.conv. rbr_dense.bn. rbr_1x1.conv. rbr_1x1.bn. '
              'rbr_identity. rbr_reparam.'), ('linear.', ))
MMPRETRAIN = Layout(
    'mmpretrain', 'stem', 'stage_', 1,
    _branches('branch_3x3.conv. branch_3x3.norm. branch_1x1.conv. '
              'branch_1x1.norm. branch_norm. branch_reparam.'), ('head.', ),
    'backbone.')
TIMM = Layout(
    'timm', 'stem', 'stages.', 0,
    _branches('conv_kxk.conv. conv_kxk.bn. conv_1x1.conv. conv_1x1.bn. '
              'identity. reparam_conv.'), ('head.', ))

BASE_LAYOUTS = {lay.name: lay for lay in (OURS, OFFICIAL, MMPRETRAIN, TIMM)}
LAYOUTS = tuple(name + suffix for name in BASE_LAYOUTS
                for suffix in ('', '_deploy'))


def base_layout(layout: str) -> Layout:
    name = layout[:-len('_deploy')] if layout.endswith('_deploy') else layout
    if name not in BASE_LAYOUTS:
        raise CheckpointError(f'unknown checkpoint layout {layout!r}; '
                              f'supported: {", ".join(LAYOUTS)}')
    return BASE_LAYOUTS[name]


def few_keys(keys, limit=5) -> str:
    keys = list(keys)
    more = f' ... ({len(keys) - limit} more)' if len(keys) > limit else ''
    return ', '.join(keys[:limit]) + more


def _take_prefix(state_dict: dict, prefix: str) -> dict:
    return {
        k[len(prefix):]: v
        for k, v in state_dict.items() if k.startswith(prefix)
    }


def normalize_state_dict(checkpoint, prefix: Optional[str] = None) -> dict:
    """The tensors of a checkpoint or state dict: unwrapped (``state_dict``,
    ``model``), without DataParallel's ``module.``, and only those under
    ``prefix`` (else under ``backbone.`` if any), with it removed."""
    if not isinstance(checkpoint, dict):
        raise CheckpointError('not a checkpoint: expected a dict of tensors, '
                              f'got {type(checkpoint).__name__}')
    for wrapper in ('state_dict', 'model'):
        if isinstance(checkpoint.get(wrapper), dict):
            checkpoint = checkpoint[wrapper]
            break
    state_dict = {
        k: v
        for k, v in checkpoint.items()
        if isinstance(k, str) and isinstance(v, Tensor)
    }
    if state_dict and all(k.startswith('module.') for k in state_dict):
        state_dict = _take_prefix(state_dict, 'module.')
    if prefix:
        prefix = prefix if prefix.endswith('.') else prefix + '.'
        taken = _take_prefix(state_dict, prefix)
        if not taken:
            raise CheckpointError(
                f'no key starts with prefix {prefix!r}; keys seen: '
                f'{few_keys(sorted(state_dict))}. Fix or drop the prefix')
        return taken
    if any(k.startswith('backbone.') for k in state_dict):
        return _take_prefix(state_dict, 'backbone.')
    return state_dict


def _check_no_se(keys) -> None:
    se_keys = [k for k in keys if _SE_PATTERN.search(k)]
    if se_keys:
        raise CheckpointError(
            'this checkpoint has squeeze-excitation layers '
            f'({few_keys(se_keys, 3)}): RepVGG-D2se is not supported; use a '
            'plain RepVGG checkpoint (A0-B3g4)')


def _without_heads(state_dict: dict, layout: Layout) -> dict:
    heads = layout.heads
    return {
        k: v
        for k, v in state_dict.items() if not (heads and k.startswith(heads))
    }


def detect_layout(checkpoint) -> str:
    """The layout of a RepVGG checkpoint or state dict, wrapped or not: one
    of :data:`LAYOUTS`, ``*_deploy`` when every block is fused."""
    state_dict = normalize_state_dict(checkpoint)
    _check_no_se(state_dict)
    best, best_keys = None, []
    for layout in BASE_LAYOUTS.values():
        parsed = [
            branch for k in _without_heads(state_dict, layout)
            for _, branch in [layout.split(k)] if branch is not None
        ]
        if len(parsed) > len(best_keys):
            best, best_keys = layout, parsed
    if best is None:
        raise CheckpointError(
            'not a RepVGG checkpoint of any known layout; keys seen: '
            f'{few_keys(sorted(state_dict))}. Supported layouts: '
            f'{", ".join(LAYOUTS)}. If the RepVGG sits under a prefix, pass '
            "it (e.g. prefix='backbone.')")
    fused = all(k.startswith(FUSED_PREFIX) for k in best_keys)
    return best.name + ('_deploy' if fused else '')


def to_ours_keys(state_dict: dict, layout: str) -> Dict[Block, dict]:
    """block -> {our branch key: tensor} of a normalized state dict; keys
    the layout does not explain (but the head) raise CheckpointError."""
    lay = base_layout(layout)
    _check_no_se(state_dict)
    blocks, unknown = {}, []
    for key, value in _without_heads(state_dict, lay).items():
        block, branch = lay.split(key)
        if block is None:
            unknown.append(key)
        else:
            blocks.setdefault(block, {})[branch] = value
    if unknown:
        raise CheckpointError(
            f'keys that a {lay.name} RepVGG checkpoint does not have: '
            f'{few_keys(unknown)}')
    return blocks


def block_name(block: Block) -> str:
    return 'stem' if block == ('stem', ) else 'stage{}.{}'.format(*block)


def all_fused(blocks: Dict[Block, dict]) -> bool:
    return all(k.startswith(FUSED_PREFIX) for b in blocks.values() for k in b)


def flatten_blocks(blocks: Dict[Block, dict], lay: Layout = OURS) -> dict:
    """:func:`to_ours_keys` blocks as a state dict in ``lay``'s names."""
    return {
        lay.wrapper + lay.join(block, branch): value
        for block, branches in blocks.items()
        for branch, value in branches.items()
    }


def export_layout(state_dict: dict, layout: str) -> dict:
    """Our backbone state dict, train-time or fused, in another layout (the
    inverse of the import, without a head); ``*_deploy`` needs it fused."""
    lay = base_layout(layout)
    blocks = to_ours_keys(normalize_state_dict(state_dict), 'ours')
    if layout.endswith('_deploy') and not all_fused(blocks):
        raise CheckpointError(f'exporting to {layout} needs a fused state '
                              'dict: call switch_to_deploy() first')
    return flatten_blocks(blocks, lay)
