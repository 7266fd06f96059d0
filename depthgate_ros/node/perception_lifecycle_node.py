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
perception_lifecycle_node: perception_node as a managed (lifecycle) node.

configure reads the parameters, loads the model and creates the (lifecycle) publishers, and
fails with the reason on a bad checkpoint or parameter, staying unconfigured; activate
subscribes and starts inference; deactivate stops processing and publishing but keeps the
model; cleanup frees the model; shutdown works from any state. Drive it with
`ros2 lifecycle set`, a lifecycle manager, or the launch file's `managed:=true`.
"""
from __future__ import annotations

from rclpy.lifecycle import LifecycleState, Node as LifecycleNode, TransitionCallbackReturn

from .parameters import ParameterError
from .perception import Perception
from .perception_node import spin

SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE


class PerceptionLifecycleNode(LifecycleNode):
    perception: Perception | None = None

    def __init__(self, **kwargs):
        super().__init__('perception_node', **kwargs)
        self.perception = Perception(self, self.create_lifecycle_publisher,
                                     self.destroy_lifecycle_publisher)

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self.perception.configure()
        except (ParameterError, ValueError, RuntimeError) as e:
            self.get_logger().error(f'cannot configure: {e}')
            self.perception.cleanup()
            return FAILURE
        return SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.perception.activate()
        return super().on_activate(state)       # enables the lifecycle publishers

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.perception.deactivate()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.perception.cleanup()
        return SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        if self.perception.active:
            self.perception.deactivate()
        self.perception.cleanup()
        return SUCCESS

    def destroy_node(self) -> None:
        if self.perception is not None:      # None: the start failed half-way
            self.perception.close()
        # rclpy's lifecycle state machine holds the node's handle: without this the node
        # outlives destroy_node and stays in the ROS graph (a phantom twin for the next node).
        self._state_machine.destroy_when_not_in_use()
        super().destroy_node()


def main() -> int:
    return spin(PerceptionLifecycleNode, 'perception_node')


if __name__ == '__main__':
    raise SystemExit(main())
