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

import os

# The suite runs eager: the node and the tools compile their network by default (the option
# `compile`), which costs a test a minute per model and input size. Before torch is imported,
# and inherited by every process a test starts; test_compile.py turns compiling back on.
os.environ['TORCH_COMPILE_DISABLE'] = '1'

from depthgate_ros.model import DepthGatedNet, ModelConfig  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

# The suite runs on pytest-xdist workers (pytest.ini): their torch thread pools share the
# cores, so each takes its share rather than all of them (spinning OpenMP threads that wait
# for a core only burn it).
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)
                          // int(os.environ.get('PYTEST_XDIST_WORKER_COUNT', 1))))


def _worker_domain() -> None:
    """
    Give each pytest-xdist worker a ROS domain of its own (before any rclpy starts).

    Its nodes, players and child processes then never see another worker's topics. The
    domains follow on from the caller's ROS_DOMAIN_ID, or from the controller's process id.
    """
    worker = os.environ.get('PYTEST_XDIST_WORKER')          # gw0, gw1, ...
    if not worker:
        return
    base = int(os.environ.get('ROS_DOMAIN_ID') or 1 + os.getppid() % 100)
    os.environ['ROS_DOMAIN_ID'] = str(1 + (base - 1 + int(worker[2:])) % 100)


_worker_domain()


def small_config(**changes) -> ModelConfig:
    """
    Build a narrow network with the paper's structure (all branches, heads, loops).

    It runs in milliseconds on a CPU.
    """
    base = {'backbone': 'resnet18', 'channels': 32, 'depth_channels': (16, 8), 'num_classes': 19}
    base.update(changes)
    return ModelConfig(**base)


@pytest.fixture
def make_model():
    def make(seed: int = 0, **changes) -> DepthGatedNet:
        torch.manual_seed(seed)
        return DepthGatedNet(small_config(**changes))
    return make


def camvid_tree(root, n=3, h=64, w=96, seed=0, label=None):
    """
    Write a CamVid tree in the 360x480 release's layout: random frames and labels, 2 splits.

    `label`: one id for every labelled pixel (11 = unlabelled), else random ids 0-11.
    """
    import cv2
    rng = np.random.default_rng(seed)
    for split in ('train', 'val'):
        (root / split).mkdir(parents=True)
        (root / f'{split}annot').mkdir()
        for i in range(n):
            cv2.imwrite(str(root / split / f'f{i}.png'),
                        rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
            labels = rng.integers(0, 12, (h, w)) if label is None else np.full((h, w), label)
            cv2.imwrite(str(root / f'{split}annot' / f'f{i}.png'), labels.astype(np.uint8))
    return root


@pytest.fixture(scope='session')
def tiny_checkpoint(tmp_path_factory):
    """Save a narrow, untrained network with Cityscapes classes as a real checkpoint."""
    from depthgate_ros.data.labels import CITYSCAPES_COLORS, CITYSCAPES_NAMES
    from depthgate_ros.model.checkpoint import ModelInfo, save_checkpoint
    torch.manual_seed(0)
    model = DepthGatedNet(ModelConfig(channels=16, depth_channels=(8, 8),
                                      depth_edges=(6.0, 12.0, 24.0, 48.0)))
    return save_checkpoint(tmp_path_factory.mktemp('model') / 'tiny.pt', model,
                           ModelInfo(CITYSCAPES_NAMES, CITYSCAPES_COLORS))


def stamped(sec, nanosec=0, frame='camera_optical'):
    """Return a std_msgs Header stamped sec.nanosec, as a camera driver stamps its images."""
    from std_msgs.msg import Header
    hdr = Header(frame_id=frame)
    hdr.stamp.sec, hdr.stamp.nanosec = sec, nanosec
    return hdr


def start_node(player, model_path, cli_args=None, **params):
    """Start an in-process perception node in `player` with these parameter values."""
    from depthgate_ros.node.perception_node import PerceptionNode
    from rclpy.parameter import Parameter
    overrides = [Parameter(k, value=v) for k, v in
                 {'model_path': str(model_path), 'device': 'cpu', **params}.items()]
    return player.add(PerceptionNode(context=player.context, cli_args=cli_args,
                                     parameter_overrides=overrides))


def node_on_bag_topics(player, model_path, **params):
    """Start a perception node in `player`, remapped to the topics depthgate-make-bag records."""
    remaps = ['--ros-args', '-r', 'image:=/camera/image_raw', '-r',
              'depth:=/camera/depth/image_raw', '-r', 'camera_info:=/camera/camera_info']
    return start_node(player, model_path, remaps, **params)


def cityscapes_reference(triples, tmp_path, monkeypatch) -> dict:
    """
    Score (prediction, ground truth, instances) train-id triples with cityscapesscripts.

    Its own evaluateImgLists on PNGs written as Cityscapes stores them (label ids, instance
    ids): the reference for IoU and iIoU. Instances are ignored where the truth is 255.
    """
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as cs
    from depthgate_ros.data.cityscapes import (encode_instances, train_ids_to_label_ids,
                                               write_png)
    import numpy as np
    # cityscapesscripts 2.3.0 still calls np.in1d, which numpy 2.4 removed.
    monkeypatch.setattr(np, 'in1d', lambda a, b, invert=False: np.isin(a, b, invert=invert)
                        .ravel(), raising=False)
    for key, value in {'quiet': True, 'JSONOutput': False, 'evalInstLevelScore': True,
                       'evalPixelAccuracy': False}.items():
        monkeypatch.setattr(cs.args, key, value)
    preds, gts = [], []
    for i, (pred, gt, inst) in enumerate(triples):
        stem = tmp_path / f'city_{i:06d}_000019'
        write_png(tmp_path / f'{stem}_pred_labelIds.png', train_ids_to_label_ids(pred))
        write_png(tmp_path / f'{stem}_gtFine_labelIds.png', train_ids_to_label_ids(gt))
        write_png(tmp_path / f'{stem}_gtFine_instanceIds.png',
                  encode_instances(gt, np.where(gt == 255, 0, inst)).astype(np.uint16))
        preds.append(str(tmp_path / f'{stem}_pred_labelIds.png'))
        gts.append(str(tmp_path / f'{stem}_gtFine_labelIds.png'))
    return cs.evaluateImgLists(preds, gts, cs.args)
