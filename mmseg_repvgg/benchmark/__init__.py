"""Speed and memory of a segmentor's inference forms, side by side.

``tools/benchmark.py`` is the command line of :func:`run_benchmark`: each
model of each config is measured in every form (train-time, backbone-fused,
fully fused, reduced precision, channels_last, Winograd, int8,
onnxruntime, OpenVINO) in one process, with the machine's matmul and conv
rates measured in the same run, and the results written as JSON, a
Markdown table and a PNG chart. :func:`miou_check` measures what each form
costs in mIoU. Every form is made by :func:`mmseg_repvgg.deploy.deploy_model`;
nothing here builds one.
"""
from .miou import miou_check
from .report import render_markdown, write_outputs, write_report
from .run import BenchmarkInterrupted, ModelSpec, Settings, run_benchmark

__all__ = [
    'BenchmarkInterrupted', 'ModelSpec', 'Settings', 'miou_check',
    'render_markdown', 'run_benchmark', 'write_outputs', 'write_report'
]
