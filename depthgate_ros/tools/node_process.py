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
perception_node in its own process, as `ros2 run` starts it (demo, benchmark, tests).

In-process publishers would share one GIL with inference, which no deployment does; and a
DDS profile is read once per process, so comparing transports needs processes anyway.
"""
from __future__ import annotations

from pathlib import Path
import signal
import subprocess
import sys
import tempfile

from ..node.perception import STATUS_NAME


class NodeProcess:
    """
    `with NodeProcess({"model_path": p}, env) as node: ...`; stops with SIGINT on exit.

    `log` is what the node wrote to stdout and stderr.
    """

    def __init__(self, params: dict, env: dict, log_level: str = 'info',
                 remap: dict | None = None):
        args = [sys.executable, '-m', 'depthgate_ros.node.perception_node', '--ros-args',
                '--log-level', log_level]
        for name, value in params.items():
            args += ['-p', f'{name}:={_yaml(value)}']
        for src, dst in (remap or {}).items():
            args += ['-r', f'{src}:={dst}']
        self.args, self.env = args, env
        self._out = tempfile.NamedTemporaryFile('w+', prefix='perception_node_', suffix='.log')
        self.proc: subprocess.Popen | None = None
        self.returncode: int | None = None
        self._signalled = False
        self._final_log: str | None = None

    def start(self) -> 'NodeProcess':
        self.proc = subprocess.Popen(self.args, env=self.env, stdout=self._out,
                                     stderr=subprocess.STDOUT, text=True)
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def send(self, sig: int) -> None:
        """Send `sig` without waiting (then `stop` only waits for the exit)."""
        if self.running():
            self.proc.send_signal(sig)
            self._signalled = True

    def stop(self, sig: int = signal.SIGINT, timeout: float = 30.0) -> int:
        """Signal the node (unless `send` did) and wait; kills it (-9) past the timeout."""
        if self.running():
            if not self._signalled:
                self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.returncode = self.proc.returncode if self.proc else None
        return self.returncode

    @property
    def log(self) -> str:
        return self._final_log if self._final_log is not None else \
            Path(self._out.name).read_text()

    def __enter__(self) -> 'NodeProcess':
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
        self._final_log = self.log
        self._out.close()


def node_status(msg) -> dict[str, str] | None:
    """perception_node's key/values in a /diagnostics message, if it holds them."""
    for status in msg.status:
        if status.name == STATUS_NAME:
            return {kv.key: kv.value for kv in status.values}
    return None


def _yaml(value) -> str:
    """Write a parameter value as --ros-args -p parses it (YAML)."""
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, (list, tuple)):
        return '[' + ','.join(_yaml(v) for v in value) + ']'
    return str(value)
