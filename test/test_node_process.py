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
perception_node as users run it.

Its own process, camera-sized images from another process, bad configurations and signals. The
camera is `camera_probe` in a third process, so a DDS profile applies to exactly the processes a
user would give it to.
"""
import re
import signal
import subprocess
import time

from depthgate_ros.tools import camera_probe
from depthgate_ros.tools.dds import ros_environment
from depthgate_ros.tools.node_process import node_status, NodeProcess
from depthgate_ros.tools.player import Player
from diagnostic_msgs.msg import DiagnosticArray
import pytest
import torch

# nodes in processes of their own, timed: one worker, in turn (test_demo.py says why)
pytestmark = pytest.mark.xdist_group('processes')

NODE = '/perception_node'


def last_diagnostics(h: Player) -> dict:
    for _, msg in reversed(h.messages('/diagnostics')):
        if (status := node_status(msg)) is not None:
            return status
    return {}


def clean(log: str) -> bool:
    return not re.search(r'Traceback|\[(WARN|ERROR)\]|RCLError', log)


# -- start-up errors: one FATAL line naming the parameter, exit code 1, no traceback ----------

CASES = {
    # case: (extra --ros-args parameters, the parameter named, words of the reason)
    'missing checkpoint': ({'model_path': '/nonexistent/model.pt'}, 'model_path', 'not found'),
    'corrupt checkpoint': ({'model_path': 'CORRUPT'}, 'model_path', 'corrupt'),
    'cuda absent': ({'device': 'cuda'}, 'device', 'CUDA is not available'),
    'out of range': ({'inference_height': -5}, 'inference_height', 'out of range'),
    'unknown gate source': ({'gate_source': 'banana'}, 'gate_source', 'banana'),
    'unknown mask class': ({'mask_classes': ['unicorn']}, 'mask_classes', 'unicorn'),
    'non-positive tta scale': ({'tta_scales': [1.0, -0.5]}, 'tta_scales', '> 0'),
}


@pytest.fixture(scope='module')
def startup_runs(tiny_checkpoint, tmp_path_factory):
    """Every case started at once (they fail before any model runs, so this is quick)."""
    corrupt = tmp_path_factory.mktemp('bad') / 'corrupt.pt'
    corrupt.write_bytes(b'PK\x03\x04 this is not a checkpoint' * 10)
    # faulthandler: a node that hangs is aborted below and prints where each thread was
    env = {**ros_environment(profile=False), 'PYTHONFAULTHANDLER': '1'}
    procs = {}
    for case, (params, _, _) in CASES.items():
        params = {'model_path': str(tiny_checkpoint), 'device': 'cpu', **params}
        if params['model_path'] == 'CORRUPT':
            params['model_path'] = str(corrupt)
        procs[case] = NodeProcess(params, env).start()
    results = {}
    deadline = time.monotonic() + 120
    for case, node in procs.items():
        try:
            node.proc.wait(max(1.0, deadline - time.monotonic()))
            results[case] = (node.proc.returncode, node.log)
        except subprocess.TimeoutExpired:      # seen once in CI: keep the evidence
            node.proc.send_signal(signal.SIGABRT)
            node.proc.wait(30)
            results[case] = (None, node.log + '\n[still running after 120 s: aborted]')
    return results


@pytest.mark.parametrize('case', list(CASES))
def test_bad_start_is_one_fatal_line(case, startup_runs):
    if case == 'cuda absent' and torch.cuda.is_available():
        pytest.skip('this machine has CUDA')
    _, name, words = CASES[case]
    returncode, log = startup_runs[case]
    assert returncode == 1, log
    fatal = [line for line in log.splitlines() if '[FATAL]' in line]
    assert len(fatal) == 1, log
    assert f'parameter {name}:' in fatal[0] and words in fatal[0], fatal[0]
    assert 'Traceback' not in log and '[ERROR]' not in log, log


# -- camera-sized images across processes --------------------------------------------------

@pytest.fixture
def listener():
    h = Player()
    h.collect(DiagnosticArray, '/diagnostics')
    yield h
    h.close()


def run_camera_into_node(checkpoint, listener, profile: bool, count: int, rate: float,
                         size=(480, 640), inference=(96, 128)):
    """
    Node and camera in their own processes (same profile setting).

    The node's accounting once the camera is done, what the camera sent, and the node's log.
    """
    env = ros_environment(profile=profile)
    params = {'model_path': str(checkpoint), 'device': 'cpu', 'num_threads': 1,
              'inference_height': inference[0], 'inference_width': inference[1],
              'diagnostics_period': 0.5}
    with NodeProcess(params, env) as node:
        assert listener.wait_for(lambda: last_diagnostics(listener), timeout=60), node.log
        sent = camera_probe.result(camera_probe.start('camera', env, size=size, rate=rate,
                                                      count=count, settle=1.0))
        # the node has finished when what it received is all processed or replaced
        listener.wait_for(lambda: (d := last_diagnostics(listener)) and int(d['received']) == (
            int(d['processed']) + int(d['replaced']) + int(d['failed'])), timeout=30)
        time.sleep(1.2)                                   # one more diagnostics period
        diag = last_diagnostics(listener)
    assert node.returncode == 0, node.log
    print(f"\nsent {sent['sent']}, node accounting {diag}")
    return {k: float(v) if k.endswith('_hz') else int(v) for k, v in diag.items()
            if k in ('received', 'processed', 'replaced', 'failed', 'lost_in_transport',
                     'missed_by_stamps', 'dropped', 'camera_rate_hz', 'errors')}, sent, \
        node.log


def test_camera_sized_images_arrive_with_the_profile(tiny_checkpoint, listener):
    # 640x480 rgb8 (921,600 bytes) best effort at 5 Hz, the profile in both processes
    d, sent, log = run_camera_into_node(tiny_checkpoint, listener, profile=True, count=20,
                                        rate=5.0)
    assert d['received'] == sent['sent'] == 20, d
    assert d['lost_in_transport'] == 0 and d['missed_by_stamps'] == 0, d
    assert d['processed'] + d['dropped'] == 20, d
    assert d['camera_rate_hz'] == pytest.approx(5.0, rel=0.01)
    assert clean(log), log


def test_without_the_profile_losses_are_counted_and_explained(tiny_checkpoint, listener):
    # the same stream with default Fast DDS settings: fragments over UDP, best effort
    d, sent, log = run_camera_into_node(tiny_checkpoint, listener, profile=False, count=25,
                                        rate=5.0)
    # many images never arrive (about 1 in 15 does when the machine is idle; 13 of 25 did once
    # during a full test run, so the bound is loose)...
    assert d['received'] <= 0.75 * sent['sent'], d
    # ...and every one is accounted for: processed, or counted as dropped (tolerance: DDS
    # cannot report a loss before the first sample it hears of or after the last)
    assert abs(sent['sent'] - (d['processed'] + d['dropped'])) <= 2, (sent, d)
    assert d['lost_in_transport'] >= sent['sent'] - d['received'] - 2, d
    assert 'Camera-sized images over DDS' in log, log     # the silence warning names the fix


def test_overload_across_processes_accounts_for_every_image(tiny_checkpoint, listener):
    # inference at 480x640 on 1 torch thread (~0.7 s a frame) fed at 8 Hz: about 5x overload
    d, sent, log = run_camera_into_node(tiny_checkpoint, listener, profile=True, count=40,
                                        rate=8.0, inference=(480, 640))
    assert d['processed'] < sent['sent'] / 2, d           # it really was overloaded
    assert d['lost_in_transport'] == 0, d
    assert abs(sent['sent'] - (d['processed'] + d['dropped'])) <= 2, (sent, d)
    assert d['camera_rate_hz'] == pytest.approx(8.0, rel=0.01)
    assert clean(log), log


# -- shutdown ------------------------------------------------------------------------------

def test_sigint_and_sigterm_while_processing_stop_cleanly(tiny_checkpoint):
    env = ros_environment(profile=True)
    # a camera that publishes throughout (640x480 at 10 Hz), whoever listens
    cam = camera_probe.start('camera', env, rate=10, count=100_000, subscribers=0, settle=0)
    params = {'model_path': str(tiny_checkpoint), 'device': 'cpu', 'num_threads': 1}
    stops, nodes = [], []
    try:
        # ten stops, in two waves of five nodes side by side (each its own name): a node
        # takes seconds to start, most of them importing, which a wave's nodes share
        for wave in range(2):
            nodes = [NodeProcess(params, env, remap={'__node': f'perception_node_{i}'}).start()
                     for i in range(5 * wave, 5 * wave + 5)]
            for node in nodes:
                # the debounced gate log appears after 5 processed frames: it is busy now
                deadline = time.monotonic() + 90
                while 'gate source:' not in node.log and time.monotonic() < deadline:
                    assert node.running(), node.log
                    time.sleep(0.05)
            signals = [signal.SIGINT if i % 2 == 0 else signal.SIGTERM for i in range(5)]
            for node, sig in zip(nodes, signals):
                node.send(sig)
                time.sleep(0.037)                   # land at different points of a frame
            for node, sig in zip(nodes, signals):
                code = node.stop()                  # waits for the exit
                stops.append((sig.name, code))
                assert code == 0, (stops, node.log)
                assert clean(node.log), node.log
    finally:
        for node in nodes:
            node.stop(signal.SIGKILL)               # those an assertion left running
        cam.kill()
        cam.wait()
        print('stops (signal, exit code):', stops)
    assert len(stops) == 10
    assert {sig for sig, _ in stops} == {'SIGINT', 'SIGTERM'}


def test_a_second_node_with_the_same_name_is_warned_about(tiny_checkpoint):
    env = ros_environment(profile=False)
    params = {'model_path': str(tiny_checkpoint), 'device': 'cpu'}
    with NodeProcess(params, env) as first, NodeProcess(params, env) as second:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not all(
                'nodes are named /perception_node' in n.log for n in (first, second)):
            time.sleep(0.2)
        for node in (first, second):
            assert '2 nodes are named /perception_node' in node.log, node.log
