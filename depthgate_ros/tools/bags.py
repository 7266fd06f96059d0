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
Recordings read and written with the pure-Python `rosbags` library: no ROS installation needed.

Read: a rosbag2 folder (sqlite3 or mcap, split into several files or not), a bare .mcap file
(no metadata.yaml, e.g. from another MCAP writer), or one or several ROS 1 .bag files read
together in time order (rosbags' AnyReader). Written: rosbag2 (sqlite3 or mcap).

Messages are deserialised into rosbags' own message classes, whose fields have the ROS names,
so the node's image codec reads them unchanged. ROS 1 messages are converted to the ROS 2
(Kilted) classes first (`to_ros2`: no header.seq, CameraInfo's `K` becomes `k`), so every
consumer sees one set of types.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rosbags.highlevel import AnyReader, AnyReaderError
from rosbags.interfaces import (Qos, QosDurability, QosHistory, QosLiveliness, QosReliability,
                                QosTime)
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import get_typestore, Stores

from ..node.image_codec import COLOR_ENCODINGS, DEPTH_ENCODINGS

TYPESTORE = get_typestore(Stores.ROS2_KILTED)
IMAGE, DISPARITY, CAMERA_INFO = ('sensor_msgs/msg/Image', 'stereo_msgs/msg/DisparityImage',
                                 'sensor_msgs/msg/CameraInfo')
COMPRESSED = 'sensor_msgs/msg/CompressedImage'     # image_transport's compressed and
#                                                    compressedDepth topics
STORAGES = {'sqlite3': StoragePlugin.SQLITE3, 'mcap': StoragePlugin.MCAP}
# What perception_node's output publishers offer (reliable, keep last 5, volatile), recorded
# with each output topic so that `ros2 bag play` republishes them alike. rclcpp writes an
# unset duration as the largest time.
_UNSET = QosTime(sec=2147483647, nsec=4294967295)
OUTPUT_QOS = Qos(history=QosHistory.KEEP_LAST, depth=5, reliability=QosReliability.RELIABLE,
                 durability=QosDurability.VOLATILE, deadline=_UNSET, lifespan=_UNSET,
                 liveliness=QosLiveliness.AUTOMATIC, liveliness_lease_duration=_UNSET,
                 avoid_ros_namespace_conventions=False)


class BagError(Exception):
    """The bag cannot be read as asked; the message says what is wrong."""


ACCEPTED = ('a rosbag2 folder (or a file in it), a bare .mcap file, or one or several ROS 1 '
            '.bag files')


def recording(paths: list[str | Path]) -> list[Path]:
    """
    Resolve what the user named to what AnyReader opens.

    A file of a rosbag2 folder means the folder (all its split files); a .mcap without
    metadata.yaml is read on its own; .bag files go together, in time order.
    """
    paths = [Path(p) for p in paths]
    if missing := [str(p) for p in paths if not p.exists()]:
        raise BagError(f'no such file or folder: {", ".join(missing)}')
    ros1 = [p for p in paths if p.suffix == '.bag']
    if ros1:
        if len(ros1) != len(paths):
            raise BagError(f'ROS 1 .bag files and rosbag2 recordings cannot be mixed; give '
                           f'{ACCEPTED}')
        return paths
    if len(paths) > 1:
        raise BagError(f'several rosbag2 recordings given; give {ACCEPTED} (a split rosbag2 '
                       'is one folder)')
    path = paths[0]
    if path.is_file() and (path.parent / 'metadata.yaml').is_file():
        return [path.parent]
    if path.is_dir() and (path / 'metadata.yaml').is_file():
        return [path]
    if path.is_file() and path.suffix == '.mcap':
        return [path]
    raise BagError(f'{path} is not a recording this tool reads (no metadata.yaml beside it); '
                   f'give {ACCEPTED}')


def open_bag(*paths: str | Path) -> AnyReader:
    """Open a recording (see `recording`); BagError with the reason when it cannot be read."""
    reader = AnyReader(recording(list(paths)), default_typestore=TYPESTORE)
    try:
        reader.open()
    except (AnyReaderError, OSError, ValueError, KeyError) as e:
        raise BagError(f"cannot open {', '.join(map(str, paths))}: {e}") from e
    except Exception as e:  # rosbags raises many kinds on damaged storage
        raise BagError(f"cannot open {', '.join(map(str, paths))}: the recording is damaged "
                       f'or truncated ({type(e).__name__}: {e})') from e
    return reader


def to_ros2(msg):
    """Return a ROS 1 message (rosbags class) as the ROS 2 message of the same type."""
    cls = TYPESTORE.types[msg.__msgtype__]
    values = {}
    for field in dataclasses.fields(cls):
        # ROS 1 capitalises a few names (CameraInfo's D, K, R, P); ROS 2 drops header.seq
        value = getattr(msg, field.name) if hasattr(msg, field.name) else \
            getattr(msg, field.name.upper())
        values[field.name] = to_ros2(value) if hasattr(value, '__msgtype__') else value
    return cls(**values)


def deserialize(reader: AnyReader, raw: bytes, msgtype: str):
    """Deserialise one message into the ROS 2 class of its type, whichever ROS recorded it."""
    msg = reader.deserialize(raw, msgtype)
    return msg if reader.is2 else to_ros2(msg)


def topic_table(reader: AnyReader) -> dict[str, str]:
    return {c.topic: c.msgtype for c in reader.connections}


def describe(reader: AnyReader) -> str:
    return '\n'.join(f'  {topic}  [{t}]  {n} msgs' for topic, t, n in sorted(
        (c.topic, c.msgtype, c.msgcount) for c in reader.connections))


def first_message(reader: AnyReader, topic: str):
    conns = [c for c in reader.connections if c.topic == topic]
    for conn, _, raw in reader.messages(connections=conns):
        return deserialize(reader, raw, conn.msgtype)
    return None


@dataclass
class Topics:
    image: str
    depth: str | None = None
    disparity: str | None = None
    camera_info: str | None = None
    labels: str | None = None


def choose_topics(reader: AnyReader, image=None, depth=None, disparity=None, camera_info=None,
                  labels=None, under: str = '') -> Topics:
    """
    Topics from the arguments.

    Else by message type (and, for Image topics, by the encoding of their first message) when that
    is unambiguous. `under`: only topics in this namespace (one camera of a ring, '/front').
    """
    table = topic_table(reader)
    listing = describe(reader)
    if under:
        space = under.rstrip('/') + '/'
        table = {t: mt for t, mt in table.items() if t.startswith(space)}
        if not table:
            raise BagError(f'no topic under {space}; the topics:\n{listing}')
    readable = {'image': (IMAGE, COMPRESSED), 'depth': (IMAGE, COMPRESSED),
                'disparity': (DISPARITY,), 'camera_info': (CAMERA_INFO,), 'labels': (IMAGE,)}
    for name, topic in (('image', image), ('depth', depth), ('disparity', disparity),
                        ('camera_info', camera_info), ('labels', labels)):
        if topic is not None and topic not in table:
            raise BagError(f'--{name} topic {topic!r} is not in the bag; its topics:\n{listing}')
        if topic is not None and table[topic] not in readable[name]:
            raise BagError(f'--{name} topic {topic!r} is {table[topic]}; it must be '
                           + ' or '.join(readable[name]))

    def by_type(msgtype, role):
        found = [t for t, mt in table.items() if mt == msgtype]
        if len(found) > 1:
            raise BagError(f'several {msgtype} topics, pass --{role}; topics:\n{listing}')
        return found[0] if found else None

    kinds: dict[str, list[str]] = {'image': [], 'depth': [], 'labels': []}
    if image is None or (depth is None and disparity is None) or labels is None:
        for topic, mt in table.items():
            if mt not in (IMAGE, COMPRESSED) or topic in (image, depth, labels):
                continue
            msg = first_message(reader, topic)
            if mt == COMPRESSED:            # the format says colour or compressedDepth
                fmt = msg.format if msg is not None else ''
                kinds['depth' if 'compressedDepth' in fmt else 'image'].append(topic)
                continue
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


def depth_kind(reader: AnyReader, topics: Topics) -> str | None:
    """How the bag's depth topic decodes (image_codec.decode_depth's kind), None without one."""
    if topics.depth:
        return 'compressedDepth' if topic_table(reader)[topics.depth] == COMPRESSED else 'depth'
    return 'disparity' if topics.disparity else None


def read_topics(reader: AnyReader, topics: list[str], start: int | None = None,
                stop: int | None = None):
    """(topic, log time ns, deserialised message) in time order, optionally from start to stop."""
    conns = [c for c in reader.connections if c.topic in topics]
    try:
        for conn, timestamp, raw in reader.messages(connections=conns, start=start, stop=stop):
            yield conn.topic, timestamp, deserialize(reader, raw, conn.msgtype)
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

    def add(self, topic: str, msgtype: str, qos: Qos | None = None) -> None:
        """Add a topic; its type description (hash and definition) comes from the typestore."""
        self.connections[topic] = self.writer.add_connection(
            topic, msgtype, typestore=TYPESTORE, offered_qos_profiles=[qos] if qos else ())

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
