"""Speed and memory of a segmentor's deploy forms side by side
(``tools/benchmark.py``), and their mIoU cost (:func:`miou_check`). Every
form is made by :func:`mmseg_repvgg.deploy.deploy_model`."""
from .miou import miou_check
from .report import render_markdown, write_outputs, write_report
from .run import BenchmarkInterrupted, ModelSpec, Settings, run_benchmark

__all__ = [
    'BenchmarkInterrupted', 'ModelSpec', 'Settings', 'miou_check',
    'render_markdown', 'run_benchmark', 'write_outputs', 'write_report'
]
