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
NYUv2, SUN-RGBD and Stanford-2D-3D loaders on trees written in each dataset's encoding.

The trees hold synthetic frames, so the values read back are known exactly.
"""
import json

import cv2
from depthgate_ros.data.cityscapes import (DatasetError, disparity_png_to_disparity,
                                           disparity_to_png)
from depthgate_ros.data.indoor import (decode_depth_png, encode_depth_png, NYUv2Dataset,
                                       SUNRGBDDataset)
from depthgate_ros.data.stanford2d3d import Stanford2D3DDataset
from depthgate_ros.data.synthetic import Camera, render_frame
import numpy as np
import pytest

SMALL = Camera(width=160, height=120, fx=150.0, fy=150.0)


def _indoor_tree(root, label_dir, n_classes, depth_format, ids=('0001', '0002')):
    truth = {}
    for k, i in enumerate(ids):
        f = render_frame(20 + k, SMALL)
        rng = np.random.default_rng(k)
        raw_labels = rng.integers(0, n_classes + 1, f.labels.shape).astype(np.uint8)
        depth = np.where(np.isnan(f.depth), np.nan, np.clip(f.depth / 6, 0.3, 9.5))
        for sub, img in (('rgb', f.rgb[..., ::-1]), (label_dir, raw_labels),
                         ('depth', encode_depth_png(depth, depth_format))):
            (root / sub).mkdir(parents=True, exist_ok=True)
            assert cv2.imwrite(str(root / sub / f'{i}.png'), img)
        truth[i] = (f.rgb, raw_labels, depth)
    (root / 'train.txt').write_text('\n'.join(ids) + '\n')
    return truth


@pytest.mark.parametrize('cls,label_dir,n,fmt', [(NYUv2Dataset, 'label40', 40, 'mm'),
                                                 (SUNRGBDDataset, 'label37', 37, 'sunrgbd')])
def test_indoor_loaders_decode_labels_and_depth(tmp_path, cls, label_dir, n, fmt):
    truth = _indoor_tree(tmp_path, label_dir, n, fmt)
    ds = cls(tmp_path, 'train')
    assert len(ds) == 2 and len(ds.class_names) == n
    for sample in ds:
        rgb, raw, depth = truth[sample['name']]
        np.testing.assert_array_equal(sample['rgb'], rgb)
        expected = np.where(raw == 0, 255, raw.astype(int) - 1)
        np.testing.assert_array_equal(sample['labels'], expected)
        assert np.array_equal(np.isnan(sample['depth']), np.isnan(depth))
        valid = ~np.isnan(depth)
        assert np.max(np.abs(sample['depth'][valid] - depth[valid])) <= 0.0005 + 1e-6


def test_sunrgbd_bit_rotation_matches_the_toolbox_formula():
    mm = np.array([[1, 1000, 4321, 8191, 0]], np.uint16)
    stored = encode_depth_png(mm / 1000.0, 'sunrgbd')
    # SUN-RGBD toolbox: depth = bitor(bitshift(D, -3), bitshift(D, 16 - 3)) / 1000
    toolbox = ((stored >> 3) | (stored << 13)).astype(np.float64) / 1000
    np.testing.assert_allclose(toolbox[0, :4], mm[0, :4] / 1000)
    np.testing.assert_allclose(decode_depth_png(stored, 'sunrgbd')[0, :4], mm[0, :4] / 1000,
                               rtol=1e-6)
    assert np.isnan(decode_depth_png(stored, 'sunrgbd')[0, 4])


def test_indoor_loader_errors_name_the_problem(tmp_path):
    _indoor_tree(tmp_path, 'label40', 40, 'mm')
    (tmp_path / 'depth' / '0002.png').unlink()
    with pytest.raises(DatasetError, match=r'depth/0002.png is missing'):
        NYUv2Dataset(tmp_path, 'train')
    with pytest.raises(DatasetError, match='test.txt is missing'):
        NYUv2Dataset(tmp_path, 'test')
    (tmp_path / 'train.txt').write_text('0001\n')
    cv2.imwrite(str(tmp_path / 'label40' / '0001.png'), np.full((120, 160), 41, np.uint8))
    with pytest.raises(DatasetError, match='holds label 41'):
        NYUv2Dataset(tmp_path, 'train')[0]
    cv2.imwrite(str(tmp_path / 'depth' / '0001.png'), np.zeros((120, 160), np.uint8))
    cv2.imwrite(str(tmp_path / 'label40' / '0001.png'), np.ones((120, 160), np.uint8))
    with pytest.raises(DatasetError, match='16-bit'):
        NYUv2Dataset(tmp_path, 'train')[0]


def _stanford_tree(root, area='area_3', height=1024, width=2048):
    entries = ['<UNK>_0_<UNK>_0', 'chair_1_office_1_3', 'wall_2_office_1_3', 'floor_1_office_1_3',
               'sofa_4_lounge_1_3']
    (root / 'assets').mkdir(parents=True)
    (root / 'assets' / 'semantic_labels.json').write_text(json.dumps(entries))
    pano = root / area / 'pano'
    for sub in ('rgb', 'depth', 'semantic'):
        (pano / sub).mkdir(parents=True)
    rows = np.arange(height)[:, None].repeat(width, 1)
    index = (rows // (height // 8)) % 6          # bands of entries 0..5 (5: out of range)
    index[:, : width // 4] = 855309              # 0x0D0D0D: the dataset's "no label" colour
    sem = np.stack([index >> 16, (index >> 8) & 255, index & 255], -1).astype(np.uint8)
    depth_units = (512 * (1.0 + rows / height * 4)).astype(np.uint16)
    depth_units[:, -10:] = 65535
    rgb = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    name = 'camera_x_office_1_frame_equirectangular_domain'
    assert cv2.imwrite(str(pano / 'rgb' / f'{name}_rgb.png'), rgb[..., ::-1])
    assert cv2.imwrite(str(pano / 'depth' / f'{name}_depth.png'), depth_units)
    assert cv2.imwrite(str(pano / 'semantic' / f'{name}_semantic.png'), sem[..., ::-1])
    return index, depth_units


def test_stanford_panorama_too_small_for_the_crop_is_named(tmp_path):
    _stanford_tree(tmp_path, height=1024, width=2048)   # half the real panorama height
    with pytest.raises(DatasetError, match='512 rows after scaling, too small for the crop'):
        Stanford2D3DDataset(tmp_path, 'val', scale=0.5)[0]
    s = Stanford2D3DDataset(tmp_path, 'val', scale=0.5, rows=None)[0]
    assert s['rgb'].shape == (512, 1024, 3)


def test_stanford_full_size_geometry_and_values(tmp_path):
    index, units = _stanford_tree(tmp_path, height=2048, width=512)
    s = Stanford2D3DDataset(tmp_path, 'val')[0]
    assert s['rgb'].shape == (704, 256, 3)
    # expected: nearest-downscaled source rows 2*y, cropped to y in [160, 864)
    src_rows = 2 * np.arange(160, 864)
    table = np.array([255, 8, 2, 1, 9, 255])       # <UNK>, chair, wall, floor, sofa, beyond
    expected_labels = table[index[src_rows, 256 + 1]]
    np.testing.assert_array_equal(s['labels'][:, 128], expected_labels)
    assert np.all(s['labels'][:, :64] == 255)      # the "no label" colour
    np.testing.assert_allclose(s['depth'][:, 100], units[src_rows, 201] / 512.0, rtol=1e-6)
    assert np.all(np.isnan(s['depth'][:, -5:]))    # 65535 = missing


def test_stanford_errors(tmp_path):
    with pytest.raises(DatasetError, match='semantic_labels.json'):
        Stanford2D3DDataset(tmp_path, 'val')
    _stanford_tree(tmp_path, height=2048, width=512)
    with pytest.raises(DatasetError, match='none of the train areas'):
        Stanford2D3DDataset(tmp_path, 'train')
    next((tmp_path / 'area_3/pano/depth').glob('*.png')).unlink()
    with pytest.raises(DatasetError, match='_depth.png is missing'):
        Stanford2D3DDataset(tmp_path, 'val')


def test_cityscapes_disparity_png_values_by_hand():
    # the Cityscapes encoding: p = 0 invalid, else d = (p - 1) / 256 pixels
    p = np.array([[0, 1, 257, 513, 65535]], np.uint16)
    d = disparity_png_to_disparity(p)
    assert np.isnan(d[0, 0])
    assert d[0, 1:].tolist() == [0.0, 1.0, 2.0, 65534 / 256]
    assert disparity_to_png(np.array([[np.nan, 1.0, 2.0]], np.float32)).tolist() == [[0, 257, 513]]
