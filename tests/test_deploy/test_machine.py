"""The one place that knows the machine: features, caps, precision choices.

Machines are simulated (flags, ``ONEDNN_MAX_CPU_ISA``), so every case runs
on every CPU; the last test checks the real detection against this
machine's ``/proc/cpuinfo``.
"""
import pytest

from mmseg_repvgg.deploy import machine as machine_module
from mmseg_repvgg.deploy.machine import Machine, detect, onednn_isa_cap

AVX2 = frozenset({'avx2', 'fma'})
ZEN4 = AVX2 | {'avx512f', 'avx512_vnni', 'avx512_bf16'}
SPR = ZEN4 | {'avx512_fp16', 'amx_bf16', 'amx_int8', 'amx_tile'}


def cpu(flags, cap=None, arch='x86_64'):
    return Machine(
        cpu='simulated',
        arch=arch,
        cpu_flags=frozenset(flags),
        onednn_cap=cap,
        onednn_int8=True)


def test_avx2_only_cpu_has_no_vnni_nor_native_bf16():
    machine = cpu(AVX2)
    assert machine.isa_level == 'AVX2'
    assert not machine.vnni and machine.int8_activation_bits == 7
    assert machine.native('fp32') and machine.native('int8')
    reason = machine.why_not('bf16')
    assert 'AVX512-BF16 or AMX' in reason and 'emulate' in reason
    assert not machine.native('fp16')


def test_avx512_bf16_vnni_cpu_runs_bf16_and_8_bit_int8():
    machine = cpu(ZEN4)
    assert machine.isa_level == 'AVX512-BF16'
    assert machine.vnni and machine.int8_activation_bits == 8
    assert machine.native('bf16') and not machine.native('fp16')
    assert cpu(SPR).native('fp16') and cpu(SPR).isa_level == 'AMX'


@pytest.mark.parametrize('flags', [{'avx2', 'avx512f'}, AVX2 | {'avx_vnni'}])
def test_vnni_comes_from_either_vnni_flavour_only(flags):
    # AVX-512 without VNNI saturates like AVX2; AVX-VNNI (256-bit) does not.
    assert cpu(flags).vnni == ('avx_vnni' in flags)


def test_onednn_cap_removes_features_the_kernels_will_not_use():
    capped = cpu(ZEN4, cap='AVX2')
    assert capped.features == {'avx2'}
    assert not capped.vnni and capped.int8_activation_bits == 7
    reason = capped.why_not('bf16')
    assert 'ONEDNN_MAX_CPU_ISA=AVX2' in reason
    # A cap above what the CPU has changes nothing.
    assert cpu(AVX2, cap='AVX512_CORE_AMX').features == {'avx2'}
    # VNNI stays, bf16 goes.
    vnni = cpu(SPR, cap='AVX512_CORE_VNNI')
    assert vnni.vnni and not vnni.native('bf16')


def test_onednn_cap_is_read_from_either_variable(monkeypatch):
    monkeypatch.delenv('ONEDNN_MAX_CPU_ISA', raising=False)
    monkeypatch.delenv('DNNL_MAX_CPU_ISA', raising=False)
    assert onednn_isa_cap() is None
    monkeypatch.setenv('DNNL_MAX_CPU_ISA', 'avx2')
    assert onednn_isa_cap() == 'AVX2'
    monkeypatch.setenv('ONEDNN_MAX_CPU_ISA', 'ALL')
    assert onednn_isa_cap() is None


def test_int8_needs_x86_and_onednn():
    arm = cpu({'asimd'}, arch='aarch64')
    assert 'x86' in arm.why_not('int8')
    assert arm.why_not('fp32') is None


def test_cuda_precisions():
    gpu = Machine(
        cpu='x',
        arch='x86_64',
        cpu_flags=AVX2,
        cuda=('A GPU', ),
        cuda_capability=(7, 5))
    assert gpu.native('fp16', 'cuda')
    assert 'Ampere' in gpu.why_not('bf16', 'cuda')
    assert 'CPU forms' in gpu.why_not('int8', 'cuda')
    assert 'no CUDA' in cpu(AVX2).why_not('fp16', 'cuda')
    with pytest.raises(ValueError, match='unknown precision'):
        gpu.why_not('fp8')


def test_detect_reads_this_cpu_and_the_cap(monkeypatch):
    with open('/proc/cpuinfo') as f:
        flags = next(line for line in f if line.startswith('flags')).split()
    monkeypatch.setenv('ONEDNN_MAX_CPU_ISA', 'AVX2')
    machine = detect()
    assert machine.cpu_flags == frozenset(flags[2:])  # after 'flags', ':'
    assert machine.onednn_cap == 'AVX2' and not machine.vnni
    assert machine.summary()['int8_activation_bits'] == 7
    # The cached machine() is this process's, detected once.
    assert machine_module.machine() is machine_module.machine()


def test_fingerprint_names_what_decides_kernel_speed(monkeypatch):
    import torch
    threads = torch.get_num_threads()
    monkeypatch.setattr(torch, '__version__', '9.9.0+test')
    avx2 = cpu(AVX2).fingerprint()
    assert avx2.startswith('simulated|x86_64|avx2|')
    assert 'torch=9.9.0+test' in avx2 and f'threads={threads}' in avx2
    assert cpu(ZEN4).fingerprint() != avx2
    # oneDNN capped to AVX2 runs the AVX2 kernels: the same fingerprint.
    assert cpu(ZEN4, cap='AVX2').fingerprint() == avx2
    torch.set_num_threads(threads + 1)
    try:
        assert cpu(AVX2).fingerprint() != avx2  # read at each call
    finally:
        torch.set_num_threads(threads)
