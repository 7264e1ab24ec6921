"""Speed and memory of a segmentor's inference forms, side by side.

``tools/benchmark.py`` is the command line of :func:`run_benchmark`: each
model of each config is measured in every form (train-time, backbone-fused,
fully fused, reduced precision, channels_last, int8, onnxruntime) in one
process, with the machine's matmul and conv rates measured in the same run,
and the results written as JSON, a Markdown table and a PNG chart.
:func:`miou_check` measures what reduced precision and int8 cost in mIoU.
"""
from .forms import FORMS, Form, reduced_dtype
from .miou import miou_check
from .report import render_markdown, write_outputs
from .run import ModelSpec, Settings, run_benchmark

__all__ = [
    'FORMS', 'Form', 'ModelSpec', 'Settings', 'miou_check', 'reduced_dtype',
    'render_markdown', 'run_benchmark', 'write_outputs'
]
