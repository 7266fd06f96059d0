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
Helpers for tests over real rclpy topics.

An isolated context on a private domain, a publisher/collector node, and waiting with a deadline.
"""
import os
import threading
import time

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy

# DDS stays on this machine; each test process gets its own domain.
os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
os.environ.setdefault('ROS_DOMAIN_ID', str(20 + os.getpid() % 80))


class Harness:
    def __init__(self, args=None):
        self.context = rclpy.Context()
        rclpy.init(args=args, context=self.context)
        # One thread: more would fight the node's inference thread for the GIL (each torch op
        # needs it back), which stretched 20 ms passes to seconds on two cores.
        self.executor = SingleThreadedExecutor(context=self.context)
        self.nodes = []
        self.test_node = self.add(Node('test_harness', context=self.context))
        self.received: dict[str, list] = {}
        self._lock = threading.Lock()
        self._spin = threading.Thread(target=self.executor.spin, daemon=True)
        self._spin.start()

    def add(self, node):
        self.nodes.append(node)
        self.executor.add_node(node)
        return node

    def publisher(self, msg_type, topic, reliable=False):
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE if reliable
                         else ReliabilityPolicy.BEST_EFFORT)
        return self.test_node.create_publisher(msg_type, topic, qos)

    def collect(self, msg_type, topic):
        self.received[topic] = []

        def cb(msg, topic=topic):
            with self._lock:
                self.received[topic].append((time.monotonic(), msg))
        qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        self.test_node.create_subscription(msg_type, topic, cb, qos)

    def messages(self, topic):
        with self._lock:
            return list(self.received[topic])

    def wait_for(self, predicate, timeout=20.0, period=0.02):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(period)
        return predicate()

    def wait_for_subscribers(self, pub, n=1, timeout=10.0):
        assert self.wait_for(lambda: pub.get_subscription_count() >= n, timeout), \
            f'no subscriber on {pub.topic_name}'

    def close(self):
        self.executor.shutdown()
        for node in self.nodes:
            node.destroy_node()
        rclpy.try_shutdown(context=self.context)
