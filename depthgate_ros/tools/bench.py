# Copyright 2026 depthgate_ros maintainers
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.

"""
The benchmark's measurements (depthgate-bench parses arguments and writes the files).

Each latency is the median and p95 of repeated runs after warm-up, all in one process, next to
the machine's own fp32 GEMM peak measured at the start, so ratios are comparable even when the
absolute speed of a shared machine is not. The node's rows (bench_node.py) run it in its own
process over rclpy.
"""
from __future__ import annotations

from dataclasses import dataclass
import os
from pathlib import Path
import platform
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from ..data.labels import CITYSCAPES_COLORS, CITYSCAPES_NAMES
from ..data.synthetic import Camera, render_frame
from ..inference import image_input
from ..metrics import percentiles
from ..model import DepthGatedNet, ModelConfig
from ..model.checkpoint import load_checkpoint, ModelInfo, save_checkpoint
from ..model.depth_bins import harden_gate, quantile_edges, sensor_gate
from ..model.gating import DepthGatingModule
from ..model.sparse_gating import gate_density
from ..weights import bundled_checkpoint


@dataclass
class Settings:
    size: tuple[int, int]
    repeats: int
    warmup: int
    channels: tuple[int, ...]         # gating-module widths: bundled-sized and paper-sized
    frames: int                       # node pipeline frames
    overload_s: float
    peers: bool
    gemm_n: int
    camera_sizes: tuple[tuple[int, int], ...]    # images sent to the node, as cameras do
    transport_frames: int


# --only models: rounds of the rows at one size timed in turns (bench_models.py)
MODEL_ROUNDS = 40

FULL = Settings(size=(256, 512), repeats=7, warmup=2, channels=(128, 512), frames=20,
                overload_s=8.0, peers=True, gemm_n=2048,
                camera_sizes=((480, 640), (720, 1280)), transport_frames=30)
QUICK = Settings(size=(64, 128), repeats=2, warmup=1, channels=(16,), frames=3,
                 overload_s=1.0, peers=True, gemm_n=256, camera_sizes=((480, 640),),
                 transport_frames=8)


def timed(fn, repeats: int, warmup: int) -> dict:
    return timed_together({0: fn}, repeats, warmup)[0]


def timed_together(fns: dict, rounds: int, warmup: int, samples: bool = False) -> dict:
    """
    Time several functions in turns, one call of each per round: {key: statistics}.

    Each round calls them in a new order (seeded): a call runs slower after one that evicted
    its weights from the cache, and in a fixed order the same row always pays for its
    predecessor (a small model's row after a large one's weights reads slower than it is).

    `samples`: also each round's time (`samples_ms`), for comparisons paired by round.
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times = {key: [] for key in fns}
    keys = list(fns)
    rng = np.random.default_rng(0)
    for _ in range(rounds):
        for i in rng.permutation(len(keys)):
            t0 = time.perf_counter()
            fns[keys[i]]()
            times[keys[i]].append(time.perf_counter() - t0)
    out = {}
    for key, seconds in times.items():
        ms = np.array(seconds) * 1e3
        q = percentiles(ms)
        out[key] = {'median_ms': q['p50'], 'p95_ms': q['p95'], 'best_ms': float(ms.min()),
                    'runs': rounds, **({'samples_ms': ms.tolist()} if samples else {})}
    return out


def machine() -> dict:
    cpu = platform.processor()
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'):
                cpu = line.split(':', 1)[1].strip()
                break
    except OSError:
        pass
    # the vector extensions torch's kernels use here (AVX2, AVX512, ...): machines differ
    return {'cpu': cpu, 'cpu_capability': torch.backends.cpu.get_cpu_capability(),
            'logical_cores': os.cpu_count(), 'torch': torch.__version__,
            'torch_threads': torch.get_num_threads(), 'python': platform.python_version(),
            'mkldnn': torch.backends.mkldnn.is_available(),
            'cuda': torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def machine_line(m: dict) -> str:
    """Return the machine as the tables' headers name it: CPU, vector capability, cores."""
    return f"{m['cpu']} ({m['cpu_capability']}), {m['logical_cores']} cores, torch {m['torch']}"


def gemm_peak(n: int, s: Settings) -> dict:
    """
    Measure the machine's fp32 peak.

    The best of several runs of torch's sgemm (MKL here) at two sizes, and of oneDNN's 3x3
    convolution at 512 channels, which on AMD CPUs beats MKL's sgemm. The larger is the ceiling the
    model is compared with.
    """
    best = None
    for size in (n // 2, n):
        a, b = torch.randn(size, size), torch.randn(size, size)
        t = timed(lambda: torch.mm(a, b), max(s.repeats, 5), s.warmup)
        gflops = 2 * size ** 3 / (t['best_ms'] / 1e3) / 1e9
        if best is None or gflops > best['sgemm_gflops']:
            best = {'n': size, **t, 'sgemm_gflops': gflops}
    c, hw = (512, (64, 128)) if n >= 1024 else (64, (16, 32))
    x, weight = torch.randn(1, c, *hw), torch.randn(c, c, 3, 3)
    with torch.inference_mode():
        t = timed(lambda: F.conv2d(x, weight, padding=1), max(s.repeats, 5), s.warmup)
    best['conv3x3_gflops'] = 2 * 9 * c * c * hw[0] * hw[1] / (t['best_ms'] / 1e3) / 1e9
    best['gflops'] = max(best['sgemm_gflops'], best['conv3x3_gflops'])
    return best


class PeakRSS:
    """
    Peak resident memory of this whole process during a block.

    In MiB (Linux: VmHWM, reset through /proc/self/clear_refs); None where that is not available.
    Absolute, not a delta: freed buffers are reused, so only the process's high-water mark is
    meaningful.
    """

    def __enter__(self):
        try:
            Path('/proc/self/clear_refs').write_text('5')
            self.ok = True
        except OSError:
            self.ok = False
        return self

    def __exit__(self, *exc):
        self.mib = None
        if self.ok:
            for line in Path('/proc/self/status').read_text().splitlines():
                if line.startswith('VmHWM'):
                    self.mib = int(line.split()[1]) / 1024


def count_flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


# -- the model -----------------------------------------------------------------------------

def model_under_test(s: Settings, quick: bool):
    """
    Return the bundled model when there is one (real gate maps).

    Else a random one of the bundled architecture.
    """
    path = None if quick else bundled_checkpoint()
    if path:
        model, info, _ = load_checkpoint(path)
        return model, info, str(path)
    torch.manual_seed(0)
    cfg = ModelConfig(backbone='resnet18', channels=s.channels[0], depth_channels=(16, 8),
                      recurrent=True, loops=2, depth_edges=(6.0, 12.0, 24.0, 48.0))
    return DepthGatedNet(cfg).eval(), ModelInfo(CITYSCAPES_NAMES, CITYSCAPES_COLORS), None


def bench_model(model, s: Settings, peak: float, name: str = 'bundled',
                configs=None) -> list[dict]:
    """configs: (gate, hard, loops, channels_last, size); size None = the settings' size."""
    half = (s.size[0] // 2, s.size[1] // 2)
    configs = configs or [('predicted', False, loops, False, None) for loops in (0, 1, 2)] + [
        ('predicted', True, 2, False, None), ('sensor', False, 2, False, None),
        ('sensor', True, 2, False, None), ('predicted', False, 2, True, None),
        ('predicted', True, 2, True, None), ('predicted', False, 2, False, half),
        ('predicted', True, 2, False, half)]
    rows = []
    for gate, hard, loops, channels_last, size in configs:
        h, w = size or s.size
        torch.manual_seed(0)
        x = torch.randn(1, 3, h, w)
        depth = None
        if gate == 'sensor':                     # a real depth map: the drive's first frame
            cam = Camera(width=w, height=h, fx=w * 0.55, fy=w * 0.55)
            depth = torch.from_numpy(render_frame(2000, cam).depth)[None, None]
        model.hard_gate = hard
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        model.to(memory_format=fmt)
        x = x.contiguous(memory_format=fmt)

        def run():
            with torch.inference_mode():
                model(x, depth, loops=loops, gate=gate)
        with torch.inference_mode():
            # FLOPs executed: the sparse path's GEMMs count only the selected pixels
            flops = count_flops(run)
        with PeakRSS() as mem:                # includes the first (cold) run
            t = timed(run, s.repeats, s.warmup)
        gflops = flops / (t['median_ms'] / 1e3) / 1e9
        rows.append({'model': name, 'channels': model.cfg.channels, 'backend': 'eager',
                     'gate': gate + (' (hard, sparse)' if hard else ''),
                     'loops': loops, 'size': [h, w], 'dtype': 'float32',
                     'memory_format': 'channels_last' if channels_last else 'contiguous',
                     **t, 'gflop': flops / 1e9, 'gflops': gflops,
                     'fraction_of_peak': gflops / peak, 'peak_rss_mib': mem.mib})
    model.hard_gate = False
    model.to(memory_format=torch.contiguous_format)
    return rows


def bench_onnx(model, info, s: Settings, eager_ms: float) -> dict:
    from ..export import export_onnx
    from ..onnx_backend import OnnxModel
    h, w = s.size
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        path = export_onnx(model, info, Path(tmp) / 'm.onnx', gate='predicted', loops=2,
                           size=(h, w))
        export_s = time.perf_counter() - t0
        net = OnnxModel(path, threads=torch.get_num_threads())
        image = torch.randn(1, 3, h, w)
        t = timed(lambda: net.run_flat(image), s.repeats, s.warmup)
    return {'backend': 'onnxruntime', 'loops': 2, 'size': [h, w], **t,
            'export_s': export_s, 'ratio_vs_eager': t['median_ms'] / eager_ms}


def bench_dilations(s: Settings, peak: float) -> list[dict]:
    """
    One 3x3 conv per dilation at the gating module's size.

    A slow backend path for some dilation would show here.
    """
    c = s.channels[-1]
    x = torch.randn(1, c, s.size[0] // 8, s.size[1] // 8)
    weight = torch.randn(c, c, 3, 3)
    rows = []
    for d in (1, 2, 4, 8, 16):
        with torch.inference_mode():
            t = timed(lambda: F.conv2d(x, weight, padding=d, dilation=d), s.repeats, s.warmup)
        flops = 2 * 9 * c * c * x.shape[-1] * x.shape[-2]
        rows.append({'dilation': d, 'channels': c, **t,
                     'fraction_of_peak': flops / (t['median_ms'] / 1e3) / 1e9 / peak})
    return rows


# -- the gating module -----------------------------------------------------------------------

def real_gates(s: Settings, model, info, n: int = 4) -> dict[str, list[torch.Tensor]]:
    """
    Gate maps as deployment sees them.

    From the synthetic drive's depth (sensor gating; area-averaged, so soft at bin boundaries and
    uniform in the sky) and the model's hard predicted gate.
    """
    h, w = s.size
    cam = Camera(width=w, height=h, fx=w * 0.55, fy=w * 0.55)
    feat = (h // 8, w // 8)
    frames = [render_frame(2000 + i, cam) for i in range(n)]
    valid = np.concatenate([f.depth[np.isfinite(f.depth)] for f in frames])
    edges = torch.tensor(model.cfg.depth_edges or quantile_edges(valid))
    sensor = [sensor_gate(torch.from_numpy(f.depth)[None, None], edges, feat) for f in frames]
    predicted = []
    model.hard_gate = True
    with torch.inference_mode():
        for f in frames:
            rgb = image_input(f.rgb, torch.tensor(info.mean), torch.tensor(info.std))
            predicted.append(model(rgb, loops=0, gate='predicted')[0]['gate'].clone())
    model.hard_gate = False
    return {'sensor depth': sensor, 'sensor depth (hard)': [harden_gate(g) for g in sensor],
            'hard predicted': predicted}


def bench_gating(s: Settings, gates: dict, k: int) -> list[dict]:
    rows = []
    for c in s.channels:
        torch.manual_seed(0)
        module = DepthGatingModule(c, (1, 2, 4, 8, 16)[:k]).eval()
        for bn in module.branches.norms:
            bn.running_var.uniform_(0.5, 2.0)
        for name, maps in gates.items():
            x = torch.randn(1, c, *maps[0].shape[-2:])
            dense_t, sparse_t, diff = [], [], 0.0
            for g in maps:
                with torch.inference_mode():
                    module.sparse = False
                    ref = module(x, g)
                    dense_t.append(timed(lambda: module(x, g), s.repeats, s.warmup))
                    module.sparse = True
                    out = module(x, g)
                    sparse_t.append(timed(lambda: module(x, g), s.repeats, s.warmup))
                diff = max(diff, float((out - ref).abs().max()))
            dense = float(np.median([t['median_ms'] for t in dense_t]))
            sparse = float(np.median([t['median_ms'] for t in sparse_t]))
            rows.append({'channels': c, 'gate': name,
                         'branches_per_pixel': float(np.mean([gate_density(g) for g in maps])),
                         'dense_ms': dense, 'sparse_ms': sparse, 'speedup': dense / sparse,
                         'max_abs_diff': diff})
    return rows


# -- peers -----------------------------------------------------------------------------------

def bench_peers(s: Settings) -> list[dict]:
    from torchvision.models.segmentation import deeplabv3_mobilenet_v3_large, deeplabv3_resnet50
    rows = []
    x = torch.randn(1, 3, *s.size)
    for name, ctor in (('deeplabv3_resnet50', deeplabv3_resnet50),
                       ('deeplabv3_mobilenet_v3_large', deeplabv3_mobilenet_v3_large)):
        net = ctor(weights=None, weights_backbone=None, num_classes=19, aux_loss=False).eval()

        def run():
            with torch.inference_mode():
                net(x)
        rows.append({'model': name, 'size': list(s.size), **timed(run, s.repeats, s.warmup)})
    return rows


# -- report ------------------------------------------------------------------------------------

def table(rows: list[dict], cols: list[tuple[str, str]]) -> list[str]:
    def fmt(v):
        if isinstance(v, list):
            return 'x'.join(str(x) for x in v)
        if isinstance(v, float):
            return f'{v:.3g}' if abs(v) < 10 else f'{v:.0f}'
        return '-' if v is None else str(v)
    lines = ['| ' + ' | '.join(c[1] for c in cols) + ' |', '|' + '---|' * len(cols)]
    lines += ['| ' + ' | '.join(fmt(r.get(c[0])) for c in cols) + ' |' for r in rows]
    return lines + ['']


def node_section(rows: list[dict]) -> list[str]:
    out = ['## Node in its own process, camera in another', '']
    for n in rows:
        st = n['stage_median_ms']
        head = (f"**{n['image_size']} images, profile {'on' if n['profile'] else 'off'}, "
                f"torch threads {n['threads']}, "
                f"{'confidence on, ' if n.get('confidence') else ''}"
                f"inference {n['inference_size'][0]}x"
                f"{n['inference_size'][1]}.** Delivered {n['delivered']}/{n['sent']}.")
        if 'overload' not in n:
            out += [head + ' No frame arrived: nothing to time.', '']
            continue
        ov = n['overload']
        out += [head + f" One frame at a time ({n['frames']} frames), medians: decode "
                f"{st['decode_ms']:.2f} ms, model {st['model_ms']:.1f} ms, convert+publish "
                f"{st['publish_ms']:.2f} ms; arrival to published {st['latency_ms']:.1f} ms, "
                f"publish to received {n['end_to_end_median_ms']:.1f} ms. Outside the model: "
                f"{n['overhead_ms']:.2f} ms = **{100 * n['overhead_fraction']:.1f}%** of the "
                'frame time.', '',
                f"Overload at {ov['rate_hz']:.1f} Hz (3x the model rate), {ov['sent']} sent: "
                f"{ov.get('processed', 0)} processed, {ov.get('replaced', 0)} replaced, "
                f"{ov.get('lost_in_transport', 0)} lost in transport, "
                f"{ov.get('missed_by_stamps', 0)} missed by stamps; processed + dropped = "
                f"**{ov['accounted']}** of {ov['sent']} sent. Latency p50 "
                f"{ov['latency_p50_ms']:.0f} ms, p95 {ov['latency_p95_ms']:.0f} ms (model "
                f"median {ov['model_median_ms']:.0f} ms).", '']
    return out


def cameras_section(r: dict) -> list[str]:
    """Return the camera ring's section: one node serving every camera, a node per camera."""
    n = len(r['cameras'])
    setups = (('one node', r['one_node']), (f'{n} nodes', r['separate_nodes']),
              (f"{n} nodes, {r['split_threads']} thread(s) each", r['separate_nodes_split']))
    out = [f"## {n} cameras, {r['size']} at {r['rate_hz']:.0f} Hz each: one node or {n}", '',
           f"Counted over {r['seconds'] - r['warmup_s']:.0f} s of each camera's stamps "
           f"(after {r['warmup_s']:.0f} s of warm-up); RSS: the nodes' sum, sampled every "
           'second. Nodes at their defaults (torch threads: one per core) unless stated.', '',
           '| setup | camera | processed | frames/s | latency p50 ms | p95 ms | mean batch |',
           '|---|---|---|---|---|---|---|']
    for name, row in setups:
        for cam, c in row['per_camera'].items():
            out.append(f"| {name} | {cam} | {c['processed']} / {c['sent']} | "
                       f"{c['processed_hz']:.2f} | {c['latency_p50_ms']:.0f} | "
                       f"{c['latency_p95_ms']:.0f} | {c['batch_mean']:.2f} |")
    out += ['', '| setup | frames/s, all cameras | spread between cameras | RSS median MiB | '
            'RSS peak MiB |', '|---|---|---|---|---|']
    for name, row in setups:
        out.append(f"| {name} | {row['processed_hz']:.2f} | {100 * row['spread']:.1f}% | "
                   f"{row['rss_median_mib']:.0f} | {row['rss_peak_mib']:.0f} |")
    out += ['', f"One node / {n} nodes: RSS **{r['rss_ratio']:.2f}x**; frames/s "
            f"**{r['throughput_ratio']:.2f}x** the better of the two {n}-node setups.", '']
    return out


def transport_table(rows: list[dict]) -> list[str]:
    return ['## Images across processes (camera_probe to camera_probe, no node)', ''] + table(
        rows, [('size', 'image'), ('mb', 'MB'), ('reliability', 'QoS'),
               ('profile', 'DDS profile'), ('sent', 'sent'), ('delivered', 'delivered'),
               ('reported_lost', 'DDS lost events')])


def markdown(r: dict) -> str:
    m, g = r['machine'], r['gemm']
    out = [f"# depthgate-bench ({'quick' if r['quick'] else 'full'})", '',
           f"{machine_line(m)} ({m['torch_threads']} threads); model: {r['model']}", '',
           f"Measured fp32 peak: **{g['gflops']:.1f} GFLOP/s**, the larger of torch's sgemm "
           f"(best of {g['runs']} at {g['n']}^3: {g['sgemm_gflops']:.1f}) and oneDNN's 3x3 "
           f"convolution ({g['conv3x3_gflops']:.1f}); 'of peak' below is relative to it.", '',
           '## Model', '']
    out += table(r['model_latency'], [
        ('model', 'model'), ('channels', 'head ch.'), ('size', 'input'), ('gate', 'gate'),
        ('loops', 'loops'),
        ('memory_format', 'memory format'), ('median_ms', 'median ms'), ('p95_ms', 'p95 ms'),
        ('gflop', 'GFLOP'), ('gflops', 'GFLOP/s'), ('fraction_of_peak', 'of peak'),
        ('peak_rss_mib', 'process peak RSS MiB')])
    if r.get('onnx'):
        o = r['onnx']
        out += [f"ONNX Runtime, loops 2: median {o['median_ms']:.1f} ms, p95 "
                f"{o['p95_ms']:.1f} ms, **{o['ratio_vs_eager']:.2f}x** eager's time "
                f"(export took {o['export_s']:.0f} s)", '']
    out += ['## One 3x3 convolution per dilation', '']
    out += table(r['dilations'], [('dilation', 'dilation'), ('channels', 'channels'),
                                  ('median_ms', 'median ms'),
                                  ('fraction_of_peak', 'of peak')])
    out += ['## Gating module: dense vs sparse (same input, real gate maps)', '']
    out += table(r['gating'], [('channels', 'channels'), ('gate', 'gate'),
                               ('branches_per_pixel', 'branches/pixel'),
                               ('dense_ms', 'dense ms'), ('sparse_ms', 'sparse ms'),
                               ('speedup', 'speed-up'), ('max_abs_diff', 'max |diff|')])
    if r.get('transport'):
        out += transport_table(r['transport'])
    if r.get('node'):
        out += node_section(r['node'])
    if r.get('peers'):
        out += ['## Peers (torchvision, random weights, same input)', '']
        out += table(r['peers'], [('model', 'model'), ('median_ms', 'median ms'),
                                  ('p95_ms', 'p95 ms')])
    return '\n'.join(out)


def bench_nodes(path: str, s: Settings) -> list[dict]:
    from .bench_node import bench_node
    cores = os.cpu_count() or 1
    runs = [(size, profile, cores, False) for size in s.camera_sizes
            for profile in (True, False)]
    runs.insert(1, (s.camera_sizes[0], True, max(1, cores - 1), False))   # a core left to ROS
    runs.insert(2, (s.camera_sizes[0], True, cores, True))       # with ~/confidence published
    return [bench_node(path, s.size, size, profile, threads, s.frames, s.overload_s,
                       confidence=confidence)
            for size, profile, threads, confidence in dict.fromkeys(runs)]


def run(s: Settings, quick: bool, no_onnx: bool = False, no_node: bool = False) -> dict:
    """Measure everything the full (or quick) benchmark reports; progress on stdout."""
    model, info, source = model_under_test(s, quick)
    result = {'quick': quick, 'machine': machine(), 'settings': s.__dict__,
              'model': source or 'random weights, bundled architecture'}
    print('GEMM peak ...', flush=True)
    result['gemm'] = gemm_peak(s.gemm_n, s)
    peak = result['gemm']['gflops']
    print('model ...', flush=True)
    result['model_latency'] = bench_model(model, s, peak)
    # The paper's head width (512 channels; random weights, latency only) beside it.
    torch.manual_seed(0)
    paper = DepthGatedNet(model.cfg.replace(channels=512)).eval()
    result['model_latency'] += bench_model(
        paper, s, peak, 'paper-sized head', [('predicted', False, 2, False, None),
                                             ('predicted', True, 2, False, None)])
    eager = next(r for r in result['model_latency'] if r['model'] == 'bundled' and
                 r['loops'] == 2 and r['gate'] == 'predicted' and
                 r['memory_format'] == 'contiguous' and r['size'] == list(s.size))
    if not no_onnx:
        print('ONNX Runtime ...', flush=True)
        result['onnx'] = bench_onnx(model, info, s, eager['median_ms'])
    result['dilations'] = bench_dilations(s, peak)
    print('gating module ...', flush=True)
    result['gating'] = bench_gating(s, real_gates(s, model, info), model.cfg.num_bins)
    if s.peers:
        print('peers ...', flush=True)
        result['peers'] = bench_peers(s)
    if not no_node:
        from .bench_node import bench_transport
        print('transport ...', flush=True)
        result['transport'] = bench_transport(
            s.camera_sizes, ('best_effort',) if quick else ('best_effort', 'reliable'),
            (False, True), s.transport_frames, rate=5.0 if not quick else 10.0)
        print('node ...', flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            path = source or str(save_checkpoint(Path(tmp) / 'm.pt', model, info))
            result['node'] = bench_nodes(path, s)
    return result
