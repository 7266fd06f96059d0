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
Pictures of predictions: label palettes, depth and gate colour maps, side-by-side panels.

Shared by the demo, the evaluators and the node's `labels_color` output, so every picture the
package makes uses the same colours.
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

IGNORE_COLOR = (0, 0, 0)
# One colour per gating branch, small dilation (far) -> large dilation (near): cool -> warm.
GATE_COLORS = np.array([[49, 54, 149], [69, 117, 180], [171, 217, 233], [244, 109, 67],
                        [165, 0, 38]], np.uint8)


def palette(colors: Sequence[Sequence[int]]) -> np.ndarray:
    """(65536, 3) lookup table: class id -> RGB; ids without a colour (255 = ignore) are black."""
    lut = np.zeros((65536, 3), np.uint8)
    lut[: len(colors)] = np.asarray(colors, np.uint8)
    return lut


def colorize_labels(labels: np.ndarray, lut: np.ndarray, rgb: np.ndarray | None = None,
                    alpha: float = 0.0) -> np.ndarray:
    """RGB image of a label map; with `rgb` and alpha > 0, blended over the image."""
    out = lut[labels]
    if rgb is not None and alpha > 0:
        out = cv2.addWeighted(rgb, alpha, out, 1.0 - alpha, 0.0)
    return out


def colorize_depth(depth: np.ndarray, near: float = 2.0, far: float = 80.0) -> np.ndarray:
    """
    Colour depth on a fixed absolute log scale (as the paper's figures: one map for all).

    Invalid depth is white.
    """
    valid = np.isfinite(depth) & (depth > 0)
    d = np.where(valid, depth, far)
    x = (np.log(np.clip(d, near, far)) - np.log(near)) / (np.log(far) - np.log(near))
    img = cv2.applyColorMap((255 * (1 - x)).astype(np.uint8), cv2.COLORMAP_MAGMA)[..., ::-1]
    img[~valid] = 255
    return img


def colorize_gate(gate: np.ndarray) -> np.ndarray:
    return GATE_COLORS[np.clip(gate, 0, len(GATE_COLORS) - 1)]


def panel(images: Sequence[np.ndarray], titles: Sequence[str], width: int = 320) -> np.ndarray:
    """Images side by side, each resized to `width` and captioned, as one RGB picture."""
    tiles = []
    for img, title in zip(images, titles):
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, 2)
        h = max(1, round(img.shape[0] * width / img.shape[1]))
        tile = cv2.resize(img, (width, h), interpolation=cv2.INTER_NEAREST)
        bar = np.full((22, width, 3), 255, np.uint8)
        cv2.putText(bar, title, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1,
                    cv2.LINE_AA)
        tiles.append(np.concatenate([bar, tile], 0))
    height = max(t.shape[0] for t in tiles)
    tiles = [np.pad(t, ((0, height - t.shape[0]), (0, 2), (0, 0)), constant_values=255)
             for t in tiles]
    return np.concatenate(tiles, 1)


def write_png(path, rgb: np.ndarray) -> None:
    if not cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1])):
        raise OSError(f'could not write {path}')
