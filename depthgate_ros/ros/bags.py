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
rosbag2 files (sqlite3 .db3 and .mcap) read and written with the pure-Python `rosbags` library.

No ROS installation is needed to evaluate a recording.

Messages are deserialised into rosbags' own message classes, whose fields have the ROS names,
so the node's image codec reads them unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rosbags.rosbag2 import Reader, ReaderError, StoragePlugin, Writer
from rosbags.typesys import get_typestore, Stores

from .image_codec import COLOR_ENCODINGS, DEPTH_ENCODINGS

TYPESTORE = get_typestore(Stores.ROS2_KILTED)
IMAGE, DISPARITY, CAMERA_INFO = ('sensor_msgs/msg/Image', 'stereo_msgs/msg/DisparityImage',
                                 'sensor_msgs/msg/CameraInfo')
STORAGES = {'sqlite3': StoragePlugin.SQLITE3, 'mcap': StoragePlugin.MCAP}


class BagError(Exception):
    """The bag cannot be read as asked; the message says what is wrong."""


def bag_dir(path: str | Path) -> Path:
    """Find the bag directory (holding metadata.yaml) from the directory or one of its files."""
    path = Path(path)
    if path.is_file() and (path.parent / 'metadata.yaml').is_file():
        return path.parent
    if path.is_dir() and (path / 'metadata.yaml').is_file():
        return path
    raise BagError(f'{path} is not a rosbag2 bag (no metadata.yaml beside it)')


def open_bag(path: str | Path) -> Reader:
    reader = Reader(bag_dir(path))
    try:
        reader.open()
    except (ReaderError, OSError, ValueError, KeyError) as e:
        raise BagError(f'cannot open bag {path}: {e}') from e
    return reader


def topic_table(reader: Reader) -> dict[str, str]:
    return {c.topic: c.msgtype for c in reader.connections}


def describe(reader: Reader) -> str:
    return '\n'.join(f'  {topic}  [{t}]  {n} msgs' for topic, t, n in sorted(
        (c.topic, c.msgtype, c.msgcount) for c in reader.connections))


def first_message(reader: Reader, topic: str):
    conns = [c for c in reader.connections if c.topic == topic]
    for conn, _, raw in reader.messages(connections=conns):
        return TYPESTORE.deserialize_cdr(raw, conn.msgtype)
    return None


@dataclass
class Topics:
    image: str
    depth: str | None = None
    disparity: str | None = None
    camera_info: str | None = None
    labels: str | None = None


def choose_topics(reader: Reader, image=None, depth=None, disparity=None, camera_info=None,
                  labels=None) -> Topics:
    """
    Topics from the arguments.

    Else by message type (and, for Image topics, by the encoding of their first message) when that
    is unambiguous.
    """
    table = topic_table(reader)
    listing = describe(reader)
    for name, topic in (('image', image), ('depth', depth), ('disparity', disparity),
                        ('camera_info', camera_info), ('labels', labels)):
        if topic is not None and topic not in table:
            raise BagError(f'--{name} topic {topic!r} is not in the bag; its topics:\n{listing}')

    def by_type(msgtype, role):
        found = [t for t, mt in table.items() if mt == msgtype]
        if len(found) > 1:
            raise BagError(f'several {msgtype} topics, pass --{role}; topics:\n{listing}')
        return found[0] if found else None

    kinds: dict[str, list[str]] = {'image': [], 'depth': [], 'labels': []}
    if image is None or (depth is None and disparity is None) or labels is None:
        for topic, mt in table.items():
            if mt != IMAGE or topic in (image, depth, labels):
                continue
            msg = first_message(reader, topic)
            enc = msg.encoding if msg is not None else ''
            if enc in DEPTH_ENCODINGS:
                kinds['depth'].append(topic)
            elif enc in ('mono8', 'mono16') and 'label' in topic:
                kinds['labels'].append(topic)
            elif enc in COLOR_ENCODINGS:
                kinds['image'].append(topic)

    def pick(given, role, optional=True):
        if given is not None:
            return given
        cands = kinds[role]
        if len(cands) > 1:
            raise BagError(f'ambiguous {role} topic {cands}: pass --{role}; topics:\n{listing}')
        if not cands and not optional:
            raise BagError(f'no {role} topic found: pass --{role}; topics:\n{listing}')
        return cands[0] if cands else None

    return Topics(image=pick(image, 'image', optional=False), depth=pick(depth, 'depth'),
                  disparity=disparity or by_type(DISPARITY, 'disparity'),
                  camera_info=camera_info or by_type(CAMERA_INFO, 'camera_info'),
                  labels=pick(labels, 'labels'))


def read_topics(reader: Reader, topics: list[str]):
    """(topic, log time ns, deserialised message) in bag order."""
    conns = [c for c in reader.connections if c.topic in topics]
    try:
        for conn, timestamp, raw in reader.messages(connections=conns):
            yield conn.topic, timestamp, TYPESTORE.deserialize_cdr(raw, conn.msgtype)
    except Exception as e:  # rosbags raises many kinds on damaged storage
        if isinstance(e, BagError):
            raise
        raise BagError(f'the bag is damaged or truncated: {type(e).__name__}: {e}') from e


# -- writing ---------------------------------------------------------------------------------

def header(stamp: int, frame_id: str):
    T = TYPESTORE.types
    sec, nsec = divmod(stamp, 1_000_000_000)
    stamp = T['builtin_interfaces/msg/Time'](sec=sec, nanosec=nsec)
    return T['std_msgs/msg/Header'](stamp=stamp, frame_id=frame_id)


def image_msg(arr: np.ndarray, encoding: str, hdr):
    arr = np.ascontiguousarray(arr)
    channels = 1 if arr.ndim == 2 else arr.shape[2]
    return TYPESTORE.types[IMAGE](
        header=hdr, height=arr.shape[0], width=arr.shape[1], encoding=encoding,
        is_bigendian=0, step=arr.shape[1] * channels * arr.dtype.itemsize,
        data=np.frombuffer(arr.tobytes(), np.uint8))


class BagWriter:
    """Open a new bag; `add(topic, msgtype)`, then `write(topic, stamp_ns, msg)`."""

    def __init__(self, path: str | Path, storage: str = 'sqlite3'):
        if storage not in STORAGES:
            raise BagError(f'storage {storage!r} is not one of {sorted(STORAGES)}')
        self.writer = Writer(Path(path), version=9, storage_plugin=STORAGES[storage])
        self.writer.open()
        self.connections: dict[str, object] = {}

    def add(self, topic: str, msgtype: str) -> None:
        self.connections[topic] = self.writer.add_connection(topic, msgtype,
                                                             typestore=TYPESTORE)

    def write(self, topic: str, stamp: int, msg) -> None:
        conn = self.connections[topic]
        self.writer.write(conn, stamp, TYPESTORE.serialize_cdr(msg, conn.msgtype))

    def write_raw(self, topic: str, stamp: int, data: bytes) -> None:
        self.writer.write(self.connections[topic], stamp, data)

    def close(self) -> None:
        self.writer.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
