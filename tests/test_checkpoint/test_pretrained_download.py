"""Pretrained weights by URL or by name, fetched once into torch's hub cache.

Checkpoints are served by a loopback HTTP server of the test's own
(127.0.0.1, a free port): nothing here reaches the network. Each file is
made from a tiny RepVGG with random BN statistics in a real layout
(mmpretrain's classifier checkpoint, the official plain state dict, timm's
safetensors) and, like the published ones, named with the start of its own
SHA-256.
"""
import gzip
import hashlib
import io
import json
import os
import socket
import threading
from collections import OrderedDict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmseg.registry import MODELS

from mmseg_repvgg.checkpoint import export_layout
from mmseg_repvgg.checkpoint.download import (MMPRETRAIN_FILES, MMPRETRAIN_URL,
                                              TIMM_ARCHS, cached_path, resolve)
from mmseg_repvgg.errors import CheckpointError
from mmseg_repvgg.models import RepVGG

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / 'configs' / 'pspnet_repvgg_b1g2_cityscapes.py'
MANIFESTS = REPO / 'tests' / 'data' / 'checkpoint_manifests'
TINY = dict(num_blocks=(1, 1, 2, 1), width_factor=(0.25, ) * 4)
BN = dict(type='BN', requires_grad=True)


class CommandPayload:
    """Unpickling runs ``touch FLAG``."""

    def __init__(self, flag):
        self.flag = str(flag)

    def __reduce__(self):
        return os.system, (f'touch {self.flag}', )


class Server:
    """Serves ``files`` (name -> bytes) and counts the requests.

    A name in ``cut`` gets a Content-Length twice its size and half its
    bytes, then the connection closes: a transfer cut short.
    """

    def __init__(self):
        self.files, self.cut, self.requests = {}, set(), []
        server = self

        class Handler(BaseHTTPRequestHandler):

            def do_GET(self):
                name = self.path.lstrip('/')
                server.requests.append(name)
                body = server.files.get(name)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                cut = name in server.cut
                self.send_header('Content-Length', str(len(body) * (1 + cut)))
                self.end_headers()
                self.wfile.write(body[:len(body) // 2] if cut else body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        return f'http://127.0.0.1:{self.httpd.server_port}/{name}'

    def add(self, stem: str, data: bytes, ext='.pth', hashed=True) -> str:
        """Serve ``data`` as ``stem-<its sha256[:8]>.ext``; its URL."""
        digest = hashlib.sha256(data).hexdigest()[:8]
        name = f'{stem}-{digest}{ext}' if hashed else stem + ext
        self.files[name] = data
        return self.url(name)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture
def server():
    served = Server()
    yield served
    served.close()


@pytest.fixture
def hub(tmp_path, monkeypatch) -> Path:
    """An empty torch hub cache: ``$TORCH_HOME/hub/checkpoints``."""
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))
    assert torch.hub.get_dir() == str(tmp_path / 'torch' / 'hub')
    return tmp_path / 'torch' / 'hub' / 'checkpoints'


def files_in(directory: Path) -> list:
    if not directory.exists():
        return []
    return sorted(p.name for p in directory.rglob('*'))


@pytest.fixture(scope='module')
def source() -> RepVGG:
    torch.manual_seed(0)
    model = RepVGG(TINY)
    gen = torch.Generator().manual_seed(0)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.rand(n, generator=gen) - 0.5)
            module.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
    return model


def to_bytes(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def mmpretrain_file(model) -> bytes:
    """As mmpretrain's publish_model.py writes a classifier's checkpoint.

    The Runner's meta (message_hub and the optimizer dropped), the
    ImageClassifier's state dict: ``backbone.*`` and ``head.fc.*``.
    """
    state = OrderedDict(export_layout(model.state_dict(), 'mmpretrain'))
    state.update({
        'head.fc.weight': torch.zeros(10, 128),
        'head.fc.bias': torch.zeros(10)
    })
    meta = dict(
        epoch=120,
        iter=600000,
        cfg="model = dict(type='ImageClassifier')",
        seed=0,
        experiment_name='repvgg-tiny_8xb32_in1k',
        time='20221213_000000',
        mmengine_version='0.3.2',
        mmpretrain_version='1.0.0rc4',
        dataset_meta=dict(classes=('tench', 'goldfish')))
    return to_bytes(dict(meta=meta, state_dict=state))


def official_file(model) -> bytes:
    """As DingXiaoH/RepVGG publishes: a plain state dict with ``linear``."""
    state = export_layout(model.state_dict(), 'official')
    state.update({
        'linear.weight': torch.zeros(10, 128),
        'linear.bias': torch.zeros(10)
    })
    return to_bytes(state)


def build_from_config(checkpoint: str):
    """The B1g2 paper config, shrunk to TINY, its weights from ``source``."""
    cfg = Config.fromfile(str(CONFIG))
    cfg.merge_from_dict({
        'model.backbone.arch': dict(TINY, _delete_=True),
        'model.backbone.norm_cfg': BN,
        'model.backbone.init_cfg.checkpoint': checkpoint,
        'model.decode_head.norm_cfg': BN,
        'model.decode_head.channels': 8,
        'model.decode_head.in_channels': 128,
        'model.auxiliary_head.norm_cfg': BN,
        'model.auxiliary_head.channels': 8,
        'model.auxiliary_head.in_channels': 64,
    })
    model = MODELS.build(cfg.model)
    model.init_weights()
    return model


def assert_same_weights(backbone, model):
    expected = model.state_dict()
    got = backbone.state_dict()
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert torch.equal(got[key], value), key


@pytest.mark.parametrize('make', [mmpretrain_file, official_file])
def test_url_in_config_downloads_once_and_loads_strictly(
        make, server, hub, source):
    url = server.add('repvgg-tiny', make(source))
    name = url.rsplit('/', 1)[1]
    model = build_from_config(url)
    assert_same_weights(model.backbone, source)
    assert server.requests == [name]
    assert files_in(hub) == [name]  # the torch.hub name, nothing else
    again = build_from_config(url)  # from the cache, no request
    assert_same_weights(again.backbone, source)
    assert server.requests == [name]


def test_timm_safetensors_without_hash(server, hub, source):
    safetensors_torch = pytest.importorskip('safetensors.torch')
    state = export_layout(source.state_dict(), 'timm')
    state = {k: v.contiguous() for k, v in state.items()}
    url = server.add(
        'model',
        safetensors_torch.save(state),
        ext='.safetensors',
        hashed=False)
    assert_same_weights(build_from_config(url).backbone, source)
    assert files_in(hub) == ['model.safetensors']


def test_bytes_that_do_not_match_the_hash_in_the_name(server, hub, source):
    data = mmpretrain_file(source)
    url = server.add('repvgg-tiny', data)
    name = url.rsplit('/', 1)[1]
    server.files[name] = data + b'tampered'
    with pytest.raises(CheckpointError, match='SHA-256') as info:
        build_from_config(url)
    assert url in str(info.value)
    assert files_in(hub) == []


@pytest.mark.parametrize('hashed', [True, False], ids=['hashed', 'unhashed'])
def test_transfer_cut_short_is_refused(server, hub, source, hashed):
    url = server.add('repvgg-tiny', mmpretrain_file(source), hashed=hashed)
    server.cut.add(url.rsplit('/', 1)[1])
    with pytest.raises(CheckpointError) as info:
        build_from_config(url)
    assert url in str(info.value) and 'not' in str(info.value)
    assert files_in(hub) == []


def closed_port_url(name: str) -> str:
    with socket.socket() as sock:  # a port that was free a moment ago
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]
    return f'http://127.0.0.1:{port}/{name}'


def test_server_down_names_url_cache_and_local_route(hub, source):
    url = closed_port_url('repvgg-tiny-0123abcd.pth')
    with pytest.raises(CheckpointError) as info:
        build_from_config(url)
    message = str(info.value)
    path = hub / 'repvgg-tiny-0123abcd.pth'
    assert url in message and str(path) in message
    assert 'local checkpoint file' in message
    assert files_in(hub) == []
    # The file put where the message says is used, with no request.
    hub.mkdir(parents=True, exist_ok=True)
    path.write_bytes(official_file(source))
    assert_same_weights(build_from_config(url).backbone, source)


def test_pickle_with_code_is_refused_after_download(server, hub, source,
                                                    tmp_path):
    checkpoint = torch.load(
        io.BytesIO(mmpretrain_file(source)), weights_only=True)
    marker = tmp_path / 'pwned'
    checkpoint['meta']['note'] = CommandPayload(marker)
    url = server.add('repvgg-tiny', to_bytes(checkpoint))
    with pytest.raises(CheckpointError, match='refused to load') as info:
        build_from_config(url)
    assert url in str(info.value)
    assert server.requests  # it was downloaded, then refused
    assert not marker.exists()
    assert files_in(hub) == []


def test_convert_tool_reads_a_url(server, hub, source, tmp_path, run_tool):
    url = server.add('repvgg-tiny', mmpretrain_file(source))
    dst = tmp_path / 'converted.pth'
    code, err = run_tool('convert_checkpoint', url, dst, '--arch',
                         json.dumps(TINY))
    assert code == 0, err
    model = RepVGG(
        TINY, init_cfg=dict(type='RepVGGPretrained', checkpoint=str(dst)))
    model.init_weights()
    assert_same_weights(model, source)
    assert torch.load(dst, weights_only=True)['meta']['source'] == url


def test_names_resolve_to_the_published_urls(hub):
    b2 = resolve('mmpretrain://repvgg-B2')
    assert b2.url == (
        MMPRETRAIN_URL + 'repvgg-B2_8xb32_in1k_20221213-d8b420ef.pth')
    assert b2.url == ('https://download.openmmlab.com/mmclassification/v0/'
                      'repvgg/repvgg-B2_8xb32_in1k_20221213-d8b420ef.pth')
    assert b2.hash_prefix == 'd8b420ef'
    assert cached_path(b2) == str(hub / b2.filename)
    assert resolve('mmpretrain://repvgg-b1g2').hash_prefix == 'ae6428fd'
    for arch, (filename, _) in MMPRETRAIN_FILES.items():
        remote = resolve(f'mmpretrain://repvgg-{arch}')
        assert remote.filename == filename
        assert filename.startswith(f'repvgg-{arch}_8xb32_in1k_')
        assert len(remote.hash_prefix) == 8
    timm = resolve('timm://repvgg_b2.rvgg_in1k')
    assert timm.url == ('https://huggingface.co/timm/repvgg_b2.rvgg_in1k/'
                        'resolve/main/model.safetensors')
    assert timm.filename == 'repvgg_b2.rvgg_in1k.safetensors'
    assert timm.hash_prefix is None
    short = resolve('timm://repvgg_b2')  # timm's default tag
    assert (short.url, short.filename) == (timm.url, timm.filename)
    for arch in TIMM_ARCHS:
        assert resolve(f'timm://repvgg_{arch.lower()}').url.startswith(
            f'https://huggingface.co/timm/repvgg_{arch.lower()}.rvgg_in1k/')


@pytest.mark.parametrize('source, hint', [
    ('mmpretrain://repvgg-B7', 'mmpretrain://repvgg-B1g2'),
    ('timm://repvgg_b1g2.rvgg_in1k', 'timm://repvgg_b2.rvgg_in1k'),
    ('s3://bucket/repvgg.pth', 'mmpretrain://'),
])
def test_unknown_names_and_schemes_are_refused_offline(source, hint, hub):
    with pytest.raises(CheckpointError) as info:
        build_from_config(source)
    assert source in str(info.value) and hint in str(info.value)
    assert files_in(hub) == []


def test_generated_mmpretrain_keys_are_the_real_ones():
    """The served files' keys are what mmpretrain's own model code names.

    ``mmpretrain_A0-train`` holds the keys of mmpretrain's RepVGG-A0
    classifier (tests/test_checkpoint/test_checkpoint_manifests.py).
    """
    with gzip.open(MANIFESTS / 'mmpretrain_A0-train.json.gz', 'rt') as f:
        real = set(json.load(f))
    with torch.device('meta'):
        ours = RepVGG('A0').state_dict()
    exported = set(export_layout(ours, 'mmpretrain'))
    assert exported == real - {'head.fc.weight', 'head.fc.bias'}
