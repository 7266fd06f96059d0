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
perception_node: depth-gated recurrent segmentation on a camera stream.

Configured and active from the start; perception.py has its topics and how it works.
perception_lifecycle_node is the same node under a lifecycle manager.
"""
from __future__ import annotations

import logging
import signal
import threading

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

from .parameters import ParameterError
from .perception import Perception

__all__ = ['PerceptionNode', 'main', 'spin']


class PerceptionNode(Node):
    """Raises ParameterError (naming the parameter) when it cannot start."""

    perception: Perception | None = None

    def __init__(self, **kwargs):
        super().__init__('perception_node', **kwargs)
        self.perception = Perception(self, self.create_publisher, self.destroy_publisher)
        self.perception.configure()
        self.perception.activate()

    def destroy_node(self) -> None:
        if self.perception is not None:      # None: the start failed half-way
            self.perception.close()
        super().destroy_node()


class _ToRosLog(logging.Handler):
    """The package's Python log records (the Predictor's: compiling, falling back) as ROS's."""

    def __init__(self, name: str):
        super().__init__(logging.INFO)
        self.ros = rclpy.logging.get_logger(name)

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.levelno >= logging.ERROR:
            self.ros.error(text)
        elif record.levelno >= logging.WARNING:
            self.ros.warning(text)
        else:
            self.ros.info(text)


def spin(make_node, name: str) -> int:
    """
    Run a node until SIGINT/SIGTERM; 1 with one FATAL line when it cannot start.

    Our own signal handling: rclpy's would invalidate the context while the worker may still be
    publishing. Here a signal only asks the spin loop to end; the worker is stopped before
    anything is destroyed.
    """
    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
    # one process, one node: what the library logs goes where the node's own lines go
    package = logging.getLogger('depthgate_ros')
    package.setLevel(logging.INFO)
    package.addHandler(_ToRosLog(name))
    package.propagate = False
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        node = make_node()
    except (ParameterError, ValueError, RuntimeError) as e:    # one line, no traceback
        rclpy.logging.get_logger(name).fatal(f'cannot start: {e}')
        rclpy.try_shutdown()
        return 1
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        while not stop.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=0.1)
    finally:
        node.perception.stop_worker()
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


def main() -> int:
    return spin(PerceptionNode, 'perception_node')


if __name__ == '__main__':
    raise SystemExit(main())
