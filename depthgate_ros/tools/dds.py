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
DDS settings for the ROS processes this package starts, and its large-image profile.

The processes are the demo, the benchmark and the tests.

Every such process keeps DDS on this machine (ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST) and
runs on a private ROS_DOMAIN_ID, so concurrent runs never see each other's topics.
"""
from __future__ import annotations

import os
from pathlib import Path
import sys

PROFILE_FILE = 'fastdds_large_images.xml'
PROFILE_VARIABLE = 'FASTDDS_DEFAULT_PROFILES_FILE'


def large_image_profile() -> Path:
    """
    Find config/fastdds_large_images.xml.

    It is looked for in the ament install space, a pip install's share/, or the source tree,
    whichever holds it.
    """
    candidates = []
    try:
        from ament_index_python.packages import get_package_share_directory, PackageNotFoundError
        try:
            candidates.append(Path(get_package_share_directory('depthgate_ros')) / 'config')
        except (PackageNotFoundError, OSError):             # OSError: no ament prefix set
            pass
    except ImportError:
        pass
    candidates += [Path(sys.prefix) / 'share' / 'depthgate_ros' / 'config',
                   Path(__file__).resolve().parents[2] / 'config']
    for folder in candidates:
        if (folder / PROFILE_FILE).is_file():
            return folder / PROFILE_FILE
    raise FileNotFoundError(f'{PROFILE_FILE} not found in ' + ', '.join(map(str, candidates)))


def private_domain_id() -> str:
    """ROS_DOMAIN_ID as set by the caller, else one derived from this process (1..100)."""
    return os.environ.get('ROS_DOMAIN_ID') or str(1 + os.getpid() % 100)


def ros_environment(profile: bool, domain_id: str | None = None,
                    base: dict | None = None) -> dict:
    """
    Environment for a child process that starts rclpy.

    Local discovery, the given (or this process's) domain, and the large-image profile on or
    explicitly off.
    """
    env = dict(os.environ if base is None else base)
    env['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    env['ROS_DOMAIN_ID'] = domain_id or private_domain_id()
    if profile:
        env[PROFILE_VARIABLE] = str(large_image_profile())
    else:
        env.pop(PROFILE_VARIABLE, None)
    return env


def use_locally(domain_id: str | None = None) -> None:
    """Apply the same settings to this process; call before rclpy.init."""
    os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    os.environ['ROS_DOMAIN_ID'] = domain_id or private_domain_id()
