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

"""perception_lifecycle_node driven through its real ~/change_state and ~/get_state services."""
import threading
import time
import weakref

from conftest import start_node
from depthgate_ros.data.synthetic import Camera, render_sequence
from depthgate_ros.inference import Predictor
from depthgate_ros.node.image_codec import array_to_msg
from depthgate_ros.node.perception_lifecycle_node import PerceptionLifecycleNode
from depthgate_ros.tools.player import Player
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
import pytest
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image
from std_msgs.msg import Header

NODE = '/perception_node'


class Lifecycle:
    """A client of the node's lifecycle services, as `ros2 lifecycle` is."""

    def __init__(self, h: Player):
        self.h = h
        self.change = h.peer.create_client(ChangeState, f'{NODE}/change_state')
        self.get = h.peer.create_client(GetState, f'{NODE}/get_state')
        for client in (self.change, self.get):
            assert client.wait_for_service(timeout_sec=20)

    def _call(self, client, request):
        future = client.call_async(request)
        assert self.h.wait_for(future.done, timeout=60)
        return future.result()

    def state(self) -> str:
        return self._call(self.get, GetState.Request()).current_state.label

    def transition(self, transition_id: int) -> bool:
        return self._call(self.change, ChangeState.Request(
            transition=Transition(id=transition_id))).success


@pytest.fixture(scope='module')
def frames():
    return list(render_sequence(0, 3, Camera(width=96, height=48, fx=105.0, fy=105.0)))


def _labels_while_sending(h, image, frames, seconds=1.0) -> int:
    """Publish frames for `seconds`; return how many labels came out meanwhile (and after)."""
    before = len(h.messages(f'{NODE}/labels'))
    end, k = time.monotonic() + seconds, 0
    while time.monotonic() < end:
        header = Header(frame_id='cam')
        header.stamp.sec = 100 + k
        image.publish(array_to_msg(frames[k % len(frames)].rgb, 'rgb8', header))
        k += 1
        time.sleep(0.1)
    time.sleep(0.5)
    return len(h.messages(f'{NODE}/labels')) - before


def _lifecycle_node(h: Player, model_path):
    """Start an unconfigured lifecycle node on `model_path` (CPU): (node, lifecycle client)."""
    node = h.add(PerceptionLifecycleNode(context=h.context, parameter_overrides=[
        Parameter('model_path', value=str(model_path)), Parameter('device', value='cpu')]))
    return node, Lifecycle(h)


def _on_a_broken_checkpoint(h: Player, tmp_path):
    """Start a lifecycle node on a file that is no checkpoint: (node, image publisher, client)."""
    bad = tmp_path / 'broken.pt'
    bad.write_bytes(b'not a checkpoint')
    node, life = _lifecycle_node(h, bad)
    h.collect(Image, f'{NODE}/labels')
    return node, h.publisher(Image, 'image'), life


def test_the_full_cycle_over_the_lifecycle_services(tiny_checkpoint, tmp_path, frames, capfd):
    h = Player()
    try:
        node, image, life = _on_a_broken_checkpoint(h, tmp_path)
        assert life.state() == 'unconfigured'

        # configure refuses a broken checkpoint with the reason, and stays unconfigured
        assert not life.transition(Transition.TRANSITION_CONFIGURE)
        assert life.state() == 'unconfigured' and node.perception.predictor is None
        assert 'cannot configure: parameter model_path' in capfd.readouterr().err
        # unconfigured, the parameters read at configure may change
        assert node.set_parameters([Parameter('model_path', value=str(tiny_checkpoint))])[
            0].successful

        assert life.transition(Transition.TRANSITION_CONFIGURE)
        assert life.state() == 'inactive'
        refused = node.set_parameters([Parameter('device', value='auto')])[0]
        assert not refused.successful and 'restart' in refused.reason
        assert image.get_subscription_count() == 0      # nothing subscribed before activate
        assert _labels_while_sending(h, image, frames) == 0

        assert life.transition(Transition.TRANSITION_ACTIVATE)
        assert life.state() == 'active'
        h.wait_for_subscribers(image)
        assert _labels_while_sending(h, image, frames) >= 3

        assert life.transition(Transition.TRANSITION_DEACTIVATE)
        assert life.state() == 'inactive' and node.perception.predictor is not None
        assert _labels_while_sending(h, image, frames) == 0

        model = weakref.ref(node.perception.predictor.model)
        assert life.transition(Transition.TRANSITION_CLEANUP)
        assert life.state() == 'unconfigured'
        assert model() is None                              # the network was freed
        assert node.perception.pubs == {}

        # and it comes back, then shuts down from active
        assert life.transition(Transition.TRANSITION_CONFIGURE)
        assert life.transition(Transition.TRANSITION_ACTIVATE)
        h.wait_for_subscribers(image)
        assert _labels_while_sending(h, image, frames) >= 3
        assert life.transition(Transition.TRANSITION_ACTIVE_SHUTDOWN)
        assert life.state() == 'finalized' and node.perception.predictor is None
        assert image.get_subscription_count() == 0
    finally:
        h.close()


def _inference_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith('depthgate-inference')]


def test_every_torch_call_runs_on_one_thread(tiny_checkpoint, tmp_path, frames, monkeypatch):
    """
    Loading, warm-up and every frame run on the inference thread, never the executor's.

    A second thread running parallel torch work gets its own OpenMP pool, and pools holding
    more threads than cores stop spinning between parallel regions, which slows the model.
    Driven as a lifecycle node, whose transitions run on the
    executor's thread; tried: a failed configure (a broken checkpoint), two activations,
    cleanup, and a second configure.
    """
    ran = []
    load, predict = Predictor.from_checkpoint.__func__, Predictor.predict
    monkeypatch.setattr(Predictor, 'from_checkpoint', classmethod(
        lambda cls, *a, **k: ran.append(('load', threading.current_thread())) or
        load(cls, *a, **k)))
    monkeypatch.setattr(Predictor, 'predict', lambda self, *a, **k: ran.append(
        ('predict', threading.current_thread())) or predict(self, *a, **k))
    h = Player()
    try:
        node, image, life = _on_a_broken_checkpoint(h, tmp_path)
        assert not life.transition(Transition.TRANSITION_CONFIGURE)
        assert [kind for kind, _ in ran] == ['load'] and not _inference_threads()
        ran.clear()
        node.set_parameters([Parameter('model_path', value=str(tiny_checkpoint))])
        for cycle in range(2):
            assert life.transition(Transition.TRANSITION_CONFIGURE)
            for _ in range(2):
                assert life.transition(Transition.TRANSITION_ACTIVATE)
                h.wait_for_subscribers(image)
                assert _labels_while_sending(h, image, frames, seconds=0.5) >= 1
                assert life.transition(Transition.TRANSITION_DEACTIVATE)
            kinds = [kind for kind, _ in ran]
            assert kinds[:2] == ['load', 'predict'] and kinds.count('predict') >= 3, kinds
            threads = {t for _, t in ran}
            assert len(threads) == 1, ran
            (thread,) = threads
            assert thread.is_alive() and _inference_threads() == [thread]
            assert life.transition(Transition.TRANSITION_CLEANUP)
            assert not thread.is_alive() and not _inference_threads()
            ran.clear()
    finally:
        h.close()


def test_a_destroyed_node_ends_its_torch_thread(tiny_checkpoint):
    """
    Destroying a running node ends the inference thread and its OpenMP pool with it.

    Tried: the plain node, and the lifecycle node destroyed while active (no transitions back).
    A leftover pool would slow every node started later in the same process.
    """
    for make in ('plain', 'lifecycle'):
        h = Player()
        try:
            if make == 'plain':
                start_node(h, tiny_checkpoint)
            else:
                _, life = _lifecycle_node(h, tiny_checkpoint)
                assert life.transition(Transition.TRANSITION_CONFIGURE)
                assert life.transition(Transition.TRANSITION_ACTIVATE)
            (thread,) = _inference_threads()
        finally:
            h.close()
        assert not thread.is_alive() and not _inference_threads(), make


def test_shutdown_from_unconfigured(tiny_checkpoint):
    h = Player()
    try:
        _, life = _lifecycle_node(h, tiny_checkpoint)
        assert life.transition(Transition.TRANSITION_UNCONFIGURED_SHUTDOWN)
        assert life.state() == 'finalized'
    finally:
        h.close()


def test_a_destroyed_lifecycle_node_leaves_the_graph(tiny_checkpoint):
    h = Player()
    h.add(PerceptionLifecycleNode(context=h.context))
    assert h.wait_for(lambda: ('perception_node', '/') in
                      h.peer.get_node_names_and_namespaces())
    h.close()
    after = Player()
    try:
        time.sleep(2.0)                 # discovery: a leftover would be announced by now
        assert ('perception_node', '/') not in after.peer.get_node_names_and_namespaces()
    finally:
        after.close()
