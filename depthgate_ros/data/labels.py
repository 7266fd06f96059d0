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
Label tables: class names and display colours per train id.

Cityscapes train ids 0-18 as defined by the Cityscapes benchmark (`cityscapesscripts`' label
table; test_labels checks this copy against it so the package itself needs no such import).
"""
from __future__ import annotations

import numpy as np

IGNORE_ID = 255

CITYSCAPES_CLASSES: tuple[tuple[str, tuple[int, int, int]], ...] = (
    ('road', (128, 64, 128)),
    ('sidewalk', (244, 35, 232)),
    ('building', (70, 70, 70)),
    ('wall', (102, 102, 156)),
    ('fence', (190, 153, 153)),
    ('pole', (153, 153, 153)),
    ('traffic light', (250, 170, 30)),
    ('traffic sign', (220, 220, 0)),
    ('vegetation', (107, 142, 35)),
    ('terrain', (152, 251, 152)),
    ('sky', (70, 130, 180)),
    ('person', (220, 20, 60)),
    ('rider', (255, 0, 0)),
    ('car', (0, 0, 142)),
    ('truck', (0, 0, 70)),
    ('bus', (0, 60, 100)),
    ('train', (0, 80, 100)),
    ('motorcycle', (0, 0, 230)),
    ('bicycle', (119, 11, 32)),
)

CITYSCAPES_NAMES = tuple(name for name, _ in CITYSCAPES_CLASSES)
CITYSCAPES_COLORS = tuple(color for _, color in CITYSCAPES_CLASSES)

# Cityscapes label id (the `labelIds` PNG value) of each train id.
CITYSCAPES_LABEL_IDS = (7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33)

# Average instance size in pixels per class, from the Cityscapes benchmark's evaluation
# (weights of the instance-level iIoU).
CITYSCAPES_AVG_INSTANCE_SIZE = {
    'bicycle': 4672.3249222261, 'caravan': 36771.8241758242, 'motorcycle': 6298.7200839748,
    'rider': 3930.4788056518, 'bus': 35732.1511111111, 'train': 67583.7075812274,
    'car': 12794.0202738185, 'person': 3462.4756337644, 'truck': 27855.1264367816,
    'trailer': 16926.9763313609,
}

# NYU-Depth-v2, 40 classes of Gupta et al. (label PNG values 1..40 -> train ids 0..39).
NYU40_NAMES = (
    'wall', 'floor', 'cabinet', 'bed', 'chair', 'sofa', 'table', 'door', 'window', 'bookshelf',
    'picture', 'counter', 'blinds', 'desk', 'shelves', 'curtain', 'dresser', 'pillow', 'mirror',
    'floor mat', 'clothes', 'ceiling', 'books', 'refridgerator', 'television', 'paper', 'towel',
    'shower curtain', 'box', 'whiteboard', 'person', 'night stand', 'toilet', 'sink', 'lamp',
    'bathtub', 'bag', 'otherstructure', 'otherfurniture', 'otherprop',
)

# SUN-RGBD, 37 classes (label PNG values 1..37 -> train ids 0..36).
SUNRGBD37_NAMES = (
    'wall', 'floor', 'cabinet', 'bed', 'chair', 'sofa', 'table', 'door', 'window', 'bookshelf',
    'picture', 'counter', 'blinds', 'desk', 'shelves', 'curtain', 'dresser', 'pillow', 'mirror',
    'floor mat', 'clothes', 'ceiling', 'books', 'fridge', 'tv', 'paper', 'towel',
    'shower curtain', 'box', 'whiteboard', 'person', 'night stand', 'toilet', 'sink', 'lamp',
    'bathtub', 'bag',
)

# Stanford-2D-3D-Semantics, 13 classes ("<UNK>" -> ignore).
STANFORD2D3D_NAMES = (
    'ceiling', 'floor', 'wall', 'beam', 'column', 'window', 'door', 'table', 'chair', 'sofa',
    'bookcase', 'board', 'clutter',
)


def bit_palette(n: int) -> tuple[tuple[int, int, int], ...]:
    """
    Return the PASCAL VOC colour map (bits of the class id spread over R, G, B).

    For datasets without official colours; id 0 would be black, so ids start at 1.
    """
    out = []
    for i in range(1, n + 1):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        out.append((r, g, b))
    return tuple(out)


# CamVid's 11 classes (the 360x480 release), in its label ids 0..10 (11 = unlabelled), with the
# colours of its original colour-coded release and the Cityscapes train ids each one covers.
# A dataset with coarser classes supervises the set of model classes its class covers (the
# summed probability, as multi-dataset training such as MSeg does), and is scored in its own
# classes with each model class mapped to the one class that covers it.
CAMVID_CLASSES: tuple[tuple[str, tuple[int, int, int], tuple[str, ...]], ...] = (
    ('sky', (128, 128, 128), ('sky',)),
    ('building', (128, 0, 0), ('building', 'wall')),
    ('pole', (192, 192, 128), ('pole',)),
    ('road', (128, 64, 128), ('road',)),
    ('pavement', (0, 0, 192), ('sidewalk',)),
    ('tree', (128, 128, 0), ('vegetation', 'terrain')),
    ('sign/symbol', (192, 128, 128), ('traffic light', 'traffic sign')),
    ('fence', (64, 64, 128), ('fence',)),
    ('car', (64, 0, 128), ('car', 'truck', 'bus', 'train')),
    ('pedestrian', (64, 64, 0), ('person',)),
    ('bicyclist', (0, 128, 192), ('rider', 'motorcycle', 'bicycle')),
)
CAMVID_NAMES = tuple(name for name, _, _ in CAMVID_CLASSES)
CAMVID_COLORS = tuple(color for _, color, _ in CAMVID_CLASSES)
CAMVID_COVERS = tuple(covers for _, _, covers in CAMVID_CLASSES)

# The original CamVid release's 32 colour-coded classes, grouped into the 11 above (the usual
# grouping, as in the 11-class release; void -> ignore).
CAMVID32_TO_11: dict[tuple[int, int, int], str | None] = {
    (64, 128, 64): 'pedestrian',     # Animal
    (192, 0, 128): 'building',       # Archway
    (0, 128, 192): 'bicyclist',      # Bicyclist
    (0, 128, 64): 'building',        # Bridge
    (128, 0, 0): 'building',         # Building
    (64, 0, 128): 'car',             # Car
    (64, 0, 192): 'pedestrian',      # CartLuggagePram
    (192, 128, 64): 'pedestrian',    # Child
    (192, 192, 128): 'pole',         # Column_Pole
    (64, 64, 128): 'fence',          # Fence
    (128, 0, 192): 'road',           # LaneMkgsDriv
    (192, 0, 64): 'road',            # LaneMkgsNonDriv
    (128, 128, 64): 'sign/symbol',   # Misc_Text
    (192, 0, 192): 'bicyclist',      # MotorcycleScooter
    (128, 64, 64): 'car',            # OtherMoving
    (64, 192, 128): 'pavement',      # ParkingBlock
    (64, 64, 0): 'pedestrian',       # Pedestrian
    (128, 64, 128): 'road',          # Road
    (128, 128, 192): 'road',         # RoadShoulder
    (0, 0, 192): 'pavement',         # Sidewalk
    (192, 128, 128): 'sign/symbol',  # SignSymbol
    (128, 128, 128): 'sky',          # Sky
    (64, 128, 192): 'car',           # SUVPickupTruck
    (0, 0, 64): 'pole',              # TrafficCone
    (0, 64, 64): 'sign/symbol',      # TrafficLight
    (192, 64, 128): 'car',           # Train
    (128, 128, 0): 'tree',           # Tree
    (192, 128, 192): 'car',          # Truck_Bus
    (64, 0, 64): 'building',         # Tunnel
    (192, 192, 0): 'tree',           # VegetationMisc
    (0, 0, 0): None,                 # Void
    (64, 192, 0): 'building',        # Wall
}


def cover_matrix(covers: tuple[tuple[str, ...], ...],
                 model_names: tuple[str, ...]) -> tuple[tuple[bool, ...], ...]:
    """
    Row d: which model classes dataset class d covers.

    Refuses a model class covered twice: scoring needs one dataset class per model class.
    """
    index = {name: i for i, name in enumerate(model_names)}
    unknown = sorted({n for c in covers for n in c} - set(index))
    if unknown:
        raise ValueError(f'classes {unknown} are not among the model classes {model_names}')
    flat = [n for c in covers for n in c]
    twice = sorted({n for n in flat if flat.count(n) > 1})
    if twice:
        raise ValueError(f'model classes {twice} are covered by more than one dataset class')
    return tuple(tuple(name in c for name in model_names) for c in covers)


def model_to_dataset(cover: tuple[tuple[bool, ...], ...]):
    """For each model class, the dataset class covering it (IGNORE_ID where none does)."""
    out = np.full(len(cover[0]), IGNORE_ID, np.uint8)
    for d, row in enumerate(cover):
        out[np.array(row, bool)] = d
    return out
