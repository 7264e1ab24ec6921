"""PSP's pyramid pooling op by op: contiguous, channels_last, and ours.

Needs torch only, so the GPU check runs it while mmcv compiles (the GPU
is idle then). For each map size and bin (1, 2, 3, 6): the median time of
``F.adaptive_avg_pool2d`` on a contiguous map, on a channels_last one (what
mmseg's PPM runs in a channels_last form), and on the contiguous copy of
the channels_last one, copy included (what
``mmseg_repvgg/deploy/kernels/psp_pooling.py`` runs); and whether the
last equals the first bit for bit on this device. Two candidates are
timed for information (equal up to rounding only): the pooling as two
fp32 contractions, and ``avg_pool2d`` where the bins divide the map.
Writes JSON::

    python tools/gpu/pool_bench.py --device cuda --out pool.json
"""
import argparse
import json
import statistics
import sys
import time

import torch
import torch.nn.functional as F

BINS = (1, 2, 3, 6)


def _median_ms(fn,
               device: str,
               warmup: int,
               runs: int,
               calls: int = 5) -> float:
    """Median ms per call. On CUDA each sample is ``calls`` calls queued
    between two events: the GPU's time, with the host's launch jitter
    hidden (mmcv compiles on every core meanwhile)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        if device.startswith('cuda'):
            start, end = (
                torch.cuda.Event(enable_timing=True) for _ in range(2))
            start.record()
            for _ in range(calls):
                fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / calls)
        else:
            begin = time.perf_counter()
            fn()
            times.append(1000.0 * (time.perf_counter() - begin))
    return statistics.median(times)


def window_matrix(size: int, bins: int, device) -> torch.Tensor:
    """(bins, size) averaging weights of adaptive pooling's windows:
    window i is [floor(i*size/bins), ceil((i+1)*size/bins))."""
    weights = torch.zeros(bins, size, device=device)
    for i in range(bins):
        start, end = (i * size) // bins, -((-(i + 1) * size) // bins)
        weights[i, start:end] = 1.0 / (end - start)
    return weights


def separable(x: torch.Tensor, bins: int) -> torch.Tensor:
    """Adaptive average pooling as two fp32 contractions (rows, then
    columns): a candidate, timed for information only (equal up to
    rounding, not bit for bit)."""
    rows = window_matrix(x.shape[2], bins, x.device)
    cols = window_matrix(x.shape[3], bins, x.device)
    return torch.einsum('ih,nchw,jw->ncij', rows, x.float(), cols).to(x.dtype)


def fixed_window(x: torch.Tensor, bins: int):
    """``avg_pool2d`` with the bins' window where they divide the map
    (then it is adaptive pooling's window too), else None."""
    height, width = x.shape[2:]
    if height % bins or width % bins:
        return None
    kernel = (height // bins, width // bins)
    return F.avg_pool2d(x, kernel, kernel)


def measure(device: str, channels: int, sizes, dtype, warmup: int, runs: int):
    """One row per (size, bin): ms of each way and the bitwise check."""
    rows = []
    gen = torch.Generator().manual_seed(0)
    for height, width in sizes:
        x = torch.randn(1, channels, height, width, generator=gen)
        x = x.to(device=device, dtype=dtype)
        x_cl = x.contiguous(memory_format=torch.channels_last)
        for bins in BINS:
            ways = dict(
                contiguous=lambda: F.adaptive_avg_pool2d(x, bins),
                channels_last=lambda: F.adaptive_avg_pool2d(x_cl, bins),
                ours=lambda: F.adaptive_avg_pool2d(x_cl.contiguous(), bins),
                separable=lambda: separable(x_cl, bins))
            if fixed_window(x, bins) is not None:
                ways['fixed_window_cl'] = lambda: fixed_window(x_cl, bins)
            row = dict(size=f'{height}x{width}', bins=bins)
            for name, fn in ways.items():
                row[f'{name}_ms'] = _median_ms(fn, device, warmup, runs)
            expected = ways['contiguous']()
            row['equal'] = bool(torch.equal(ways['ours'](), expected))
            # The candidates, for information: their largest difference.
            for name in ('separable', 'fixed_window_cl'):
                if name in ways:
                    row[f'{name}_max_diff'] = float(
                        (ways[name]().float() - expected.float()).abs().max())
            rows.append(row)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--device', default='cuda')
    parser.add_argument('--channels', type=int, default=2048)
    parser.add_argument(
        '--sizes',
        nargs='+',
        default=['128x256', '64x128'],
        help='H x W of the map (1/8 of 1024x2048 and 512x1024)')
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--runs', type=int, default=20)
    parser.add_argument('--out', required=True)
    args = parser.parse_args(argv)
    cuda = args.device.startswith('cuda')
    if cuda and not torch.cuda.is_available():
        print(
            'error: --device cuda: torch sees no CUDA device', file=sys.stderr)
        return 2
    sizes = [tuple(int(v) for v in text.split('x')) for text in args.sizes]
    dtype = torch.float16 if cuda else torch.float32
    with torch.inference_mode():
        rows = measure(args.device, args.channels, sizes, dtype, args.warmup,
                       args.runs)
    result = dict(
        device=torch.cuda.get_device_name(args.device) if cuda else 'cpu',
        dtype=str(dtype).replace('torch.', ''),
        channels=args.channels,
        torch=torch.__version__,
        rows=rows)
    with open(args.out, 'w') as f:
        json.dump(result, f, indent=2)
    for row in rows:
        print(f'[pool] {row["size"]} bins {row["bins"]}: contiguous '
              f'{row["contiguous_ms"]:.3f} ms, channels_last '
              f'{row["channels_last_ms"]:.3f} ms, ours {row["ours_ms"]:.3f} '
              f'ms, equal {row["equal"]}')
    return 0 if all(row['equal'] for row in rows) else 1


if __name__ == '__main__':
    sys.exit(main())
