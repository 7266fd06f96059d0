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
Labelled folders: CamVid's two releases and a user's own folder with a classes.yaml.

Trees are written here in each encoding, with labels drawn at random, so what a loader reads
back is known; the real CamVid frames are read where they are at hand.
"""
import os
from pathlib import Path

import cv2
from depthgate_ros.data.cityscapes import DatasetError
from depthgate_ros.data.labelled import camvid, LabelledFolder
from depthgate_ros.data.labels import (CAMVID32_TO_11, CAMVID_COVERS, CAMVID_NAMES,
                                       CITYSCAPES_NAMES, cover_matrix, IGNORE_ID)
import numpy as np
import pytest
import yaml

REALDATA = Path(os.environ.get('DEPTHGATE_REALDATA',
                               Path(__file__).resolve().parents[2] / 'shared' / 'realdata'))


def _image(rng, h=12, w=16):
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_camvid_360x480_release(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / 'val').mkdir()
    (tmp_path / 'valannot').mkdir()
    ids = rng.integers(0, 12, (12, 16)).astype(np.uint8)          # 11 = unlabelled
    rgb = _image(rng)
    cv2.imwrite(str(tmp_path / 'val' / 'f1.png'), rgb[..., ::-1])
    cv2.imwrite(str(tmp_path / 'valannot' / 'f1.png'), ids)
    ds = camvid(tmp_path, 'val')
    s = ds[0]
    assert ds.class_names == CAMVID_NAMES and len(ds) == 1
    np.testing.assert_array_equal(s['rgb'], rgb)
    np.testing.assert_array_equal(s['labels'], np.where(ids == 11, IGNORE_ID, ids))


def test_camvid_original_release_groups_32_colours_into_11(tmp_path):
    rng = np.random.default_rng(1)
    (tmp_path / '701_StillsRaw_full').mkdir()
    (tmp_path / 'LabeledApproved_full').mkdir()
    colours = list(CAMVID32_TO_11)
    pick = rng.integers(0, len(colours), (12, 16))
    label_rgb = np.array(colours, np.uint8)[pick]
    for stem in ('0001TP_006690', '0001TP_006720'):
        cv2.imwrite(str(tmp_path / '701_StillsRaw_full' / f'{stem}.png'), _image(rng))
        cv2.imwrite(str(tmp_path / 'LabeledApproved_full' / f'{stem}_L.png'),
                    label_rgb[..., ::-1])
    # SegNet's list format: image and label paths of the other release
    (tmp_path / 'train.txt').write_text('/SegNet/CamVid/train/0001TP_006720.png '
                                        '/SegNet/CamVid/trainannot/0001TP_006720.png\n')
    ds = camvid(tmp_path, 'train')
    assert [name for name, _, _ in ds.items] == ['0001TP_006720']
    expected = np.array([IGNORE_ID if CAMVID32_TO_11[c] is None
                         else CAMVID_NAMES.index(CAMVID32_TO_11[c]) for c in colours])[pick]
    np.testing.assert_array_equal(ds[0]['labels'], expected)
    assert (expected == IGNORE_ID).any() and (expected == CAMVID_NAMES.index('car')).any()


def test_camvid_grouping_covers_every_cityscapes_class_once():
    rows = np.array(cover_matrix(CAMVID_COVERS, CITYSCAPES_NAMES))
    assert rows.shape == (11, 19)
    np.testing.assert_array_equal(rows.sum(0), np.ones(19))
    car = CAMVID_NAMES.index('car')
    assert {CITYSCAPES_NAMES[i] for i in np.flatnonzero(rows[car])} == {
        'car', 'truck', 'bus', 'train'}


def _folder(root, classes, label, image_shape=(12, 16), splits=None):
    (root / 'images').mkdir(parents=True)
    (root / 'labels').mkdir()
    cv2.imwrite(str(root / 'images' / 'a.jpg'), np.zeros((*image_shape, 3), np.uint8))
    cv2.imwrite(str(root / 'labels' / 'a.png'), label)
    spec = {'classes': classes}
    if splits:
        spec['splits'] = splits
    (root / 'classes.yaml').write_text(yaml.safe_dump(spec))


def test_user_folder_by_ids(tmp_path):
    label = np.array([[0, 1, 2, 7]] * 3, np.uint8)
    _folder(tmp_path, [{'name': 'drivable', 'ids': [1, 2], 'covers': ['road']},
                       {'name': 'vehicle', 'ids': [7], 'covers': ['car', 'truck', 'bus']}],
            label, (3, 4))
    ds = LabelledFolder.from_root(tmp_path, 'train')
    np.testing.assert_array_equal(ds[0]['labels'][0], [IGNORE_ID, 0, 0, 1])
    assert ds.covers == (('road',), ('car', 'truck', 'bus'))


def test_user_folder_by_colours_and_split_lists(tmp_path):
    label = np.zeros((3, 4, 3), np.uint8)
    label[:, 2:] = (0, 0, 142)                                     # RGB
    _folder(tmp_path, [{'name': 'vehicle', 'colors': [[0, 0, 142]], 'covers': ['car']}],
            label[..., ::-1], (3, 4), splits={'train': 'train.txt'})
    (tmp_path / 'train.txt').write_text('a\n')
    labels = LabelledFolder.from_root(tmp_path, 'train')[0]['labels']
    np.testing.assert_array_equal(labels[0], [IGNORE_ID, IGNORE_ID, 0, 0])
    with pytest.raises(DatasetError, match="no split 'val'"):
        LabelledFolder.from_root(tmp_path, 'val')


@pytest.mark.parametrize('case, classes, match', [
    ('a model class that does not exist', [{'name': 'x', 'ids': [1], 'covers': ['lorry']}],
     'not among the model classes'),
    ('one value for two classes', [{'name': 'x', 'ids': [1], 'covers': ['car']},
                                   {'name': 'y', 'ids': [1], 'covers': ['road']}],
     'given twice'),
    ('one model class under two classes', [{'name': 'x', 'ids': [1], 'covers': ['car']},
                                           {'name': 'y', 'ids': [2], 'covers': ['car']}],
     'more than one dataset class'),
    ('ids and colours mixed', [{'name': 'x', 'ids': [1], 'covers': ['car']},
                               {'name': 'y', 'colors': [[1, 2, 3]], 'covers': ['road']}],
     'not both'),
])
def test_user_folder_refuses_a_bad_classes_yaml(tmp_path, case, classes, match):
    _folder(tmp_path, classes, np.zeros((12, 16), np.uint8))
    with pytest.raises(DatasetError, match=match):
        LabelledFolder.from_root(tmp_path, 'train')


def test_user_folder_refuses_bad_files(tmp_path):
    with pytest.raises(DatasetError, match='no classes.yaml'):
        LabelledFolder.from_root(tmp_path, 'train')
    # a label PNG of another size than its image
    _folder(tmp_path, [{'name': 'x', 'ids': [1], 'covers': ['car']}],
            np.zeros((5, 5), np.uint8))
    with pytest.raises(DatasetError, match='labels are'):
        LabelledFolder.from_root(tmp_path, 'train')[0]
    # an RGB label PNG where the classes are ids
    cv2.imwrite(str(tmp_path / 'labels' / 'a.png'), np.zeros((12, 16, 3), np.uint8))
    with pytest.raises(DatasetError, match='given by id'):
        LabelledFolder.from_root(tmp_path, 'train')[0]


@pytest.mark.skipif(not (REALDATA / 'camvid').is_dir(),
                    reason=f'real CamVid frames not at hand ({REALDATA / "camvid"})')
def test_real_camvid_frames_read_in_their_encoding(tmp_path):
    # the 8 real frames, laid out as the release lays them (links, no copies)
    (tmp_path / 'val').mkdir()
    (tmp_path / 'valannot').mkdir()
    for p in sorted((REALDATA / 'camvid').glob('*_annot.png')):
        stem = p.name[:-len('_annot.png')]
        (tmp_path / 'val' / f'{stem}.png').symlink_to(p.with_name(f'{stem}.png'))
        (tmp_path / 'valannot' / f'{stem}.png').symlink_to(p)
    ds = camvid(tmp_path, 'val')
    assert len(ds) == 8
    s = ds[0]
    assert s['rgb'].shape == (360, 480, 3) and s['labels'].shape == (360, 480)
    values = set(np.unique(np.concatenate([ds[i]['labels'].ravel() for i in range(8)])))
    assert values <= set(range(11)) | {IGNORE_ID}
    # a street from a car: road and sky present on every frame
    for i in range(8):
        present = set(np.unique(ds[i]['labels']))
        assert {CAMVID_NAMES.index('road'), CAMVID_NAMES.index('sky')} <= present
