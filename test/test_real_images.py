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
The default model on real street frames that nobody here made.

Eight CamVid validation frames (Cambridge, 360x480, 11 classes) where they are at hand
(DEPTHGATE_REALDATA, or a `shared/realdata` folder beside the checkout); skipped elsewhere.
The default model has trained on CamVid val since its third stage, so these frames guard
against a broken model or pipeline (labels, colours, class map), not against overfitting:
docs/results.md "Real images" reports the default model on CamVid's whole test split.
"""
import os
from pathlib import Path

from depthgate_ros.data.labelled import CAMVID11, LabelledFolder
from depthgate_ros.evaluation import evaluate_dataset
from depthgate_ros.inference import Predictor
import pytest

REALDATA = Path(os.environ.get('DEPTHGATE_REALDATA',
                               Path(__file__).resolve().parents[2] / 'shared' / 'realdata'))
CAMVID = REALDATA / 'camvid'

pytestmark = pytest.mark.skipif(not CAMVID.is_dir(),
                                reason=f'real CamVid frames not at hand ({CAMVID})')


def test_default_model_labels_real_camvid_frames():
    stems = sorted(p.name[:-len('_annot.png')] for p in CAMVID.glob('*_annot.png'))
    frames = LabelledFolder(CAMVID, CAMVID, CAMVID11, stems, label_suffix='_annot')
    assert len(frames) == 8
    # as the node runs it: the bundled default, at the frames' own size, its default gate
    # (no depth: the network's own), scored in CamVid's 11 classes
    predictor = Predictor.from_checkpoint('default', device='cpu', channels_last=True)
    result = evaluate_dataset(predictor, frames)
    assert result['gate_source'] == 'predicted'
    r = result['final']
    assert r['miou'] >= 0.5, r['iou']
    assert r['iou']['road'] > 0.8 and r['iou']['sky'] > 0.8 and r['iou']['car'] > 0.4
