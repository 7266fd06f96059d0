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
The ESPNetv2 encoder (Mehta et al., CVPR 2019), as a backbone that loads published weights.

Written from the architecture's description so that the state dicts of the public EdgeNets
model zoo load key for key: an ESPNetv2 segmentation file (`base_net.*` keys, trained on
Cityscapes) or a classification one (ImageNet). Those are the real-image features this
package can have without a download: ESPNetv2 at width s = 2.0 on Cityscapes is published at
66.4 val mIoU.

The network is a stride-2 conv, then four stages that each halve the resolution: a
DownSampler (an EESP block at stride 2 beside a 3x3 average pool, plus the image itself,
average-pooled to the same size and projected: "input reinforcement"), followed at stride 8 and
16 by 3 and 7 EESP blocks. An EESP block projects to 1/4 of its width with a grouped 1x1,
runs four depthwise 3x3 convs with growing dilation on that, adds each branch to the one
before (hierarchical fusion, against gridding), and merges them with a grouped 1x1.
"""
from __future__ import annotations

import math

import torch
from torch import nn
import torch.nn.functional as F

from .config import ESPNETV2_WIDTHS

# Channels per width s (config.ESPNETV2_WIDTHS): stride 2, 4, 8, 16 (the stride-32 stage is
# the classifier's, unused).
WIDTHS = dict(zip(ESPNETV2_WIDTHS, ((16, 32, 64, 128), (32, 64, 128, 256), (32, 80, 160, 320),
                                    (32, 96, 192, 384), (32, 128, 256, 512))))
_BRANCHES = 4
_BLOCKS = (3, 7)                      # EESP blocks after the stride-8 and stride-16 downsamplers
# Largest kernel a branch may emulate at each stage (stride 4, 8, 16): the feature map is
# small, so a wider dilation would read mostly padding.
_RECEPTIVE_LIMIT = (13, 11, 9)


class _ConvBN(nn.Sequential):
    """conv + BN (+ PReLU): the names (conv, bn, act) are those of the published files."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1,
                 dilation: int = 1, act: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, (k - 1) // 2 * dilation, dilation,
                              groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        if act:
            self.act = nn.PReLU(cout)


class _Dilated(nn.Module):
    """A depthwise 3x3 conv without BN (the files nest it as `.conv`)."""

    def __init__(self, channels: int, stride: int, dilation: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride, dilation, dilation, channels,
                              bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class _BNAct(nn.Sequential):
    def __init__(self, channels: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels)
        self.act = nn.PReLU(channels)


class EESP(nn.Module):
    """Reduce, split, transform (dilated depthwise), fuse hierarchically, merge."""

    def __init__(self, cin: int, cout: int, stride: int = 1, limit: int = 7,
                 residual: bool = True):
        super().__init__()
        width = cout // _BRANCHES
        if width * _BRANCHES != cout:
            raise ValueError(f'EESP width {cout} is not a multiple of {_BRANCHES}')
        self.proj_1x1 = _ConvBN(cin, width, 1, groups=_BRANCHES)
        # kernel 3, 5, 7, 9 emulated by dilation 1, 2, 3, 4; past the stage's limit a branch
        # falls back to a plain 3x3
        kernels = sorted(k if k <= limit else 3 for k in range(3, 3 + 2 * _BRANCHES, 2))
        self.spp_dw = nn.ModuleList(_Dilated(width, stride, (k - 1) // 2) for k in kernels)
        self.conv_1x1_exp = _ConvBN(cout, cout, 1, groups=_BRANCHES, act=False)
        self.br_after_cat = _BNAct(cout)
        self.module_act = nn.PReLU(cout)
        # a downsampler's EESP hands its merge on un-activated; the downsampler adds and acts
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        reduced = self.proj_1x1(x)
        branches = [self.spp_dw[0](reduced)]
        for conv in self.spp_dw[1:]:
            branches.append(conv(reduced) + branches[-1])
        out = self.conv_1x1_exp(self.br_after_cat(torch.cat(branches, 1)))
        if not self.residual:
            return out
        if out.shape == x.shape:
            out = out + x
        return self.module_act(out)


class DownSampler(nn.Module):
    """Halve the resolution: [avg pool, EESP at stride 2] + the image's projection."""

    def __init__(self, cin: int, cout: int, limit: int):
        super().__init__()
        self.eesp = EESP(cin, cout - cin, stride=2, limit=limit, residual=False)
        self.avg = nn.AvgPool2d(3, stride=2, padding=1)
        self.inp_reinf = nn.Sequential(_ConvBN(3, 3, 3), _ConvBN(3, cout, 1, act=False))
        self.act = nn.PReLU(cout)

    def forward(self, x: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        out = torch.cat([self.avg(x), self.eesp(x)], 1)
        return self.act(out + self.inp_reinf(image))


class ESPNetv2Encoder(nn.Module):
    """
    The ESPNetv2 trunk up to stride 16.

    Returns its stride-4, stride-8 and stride-16 maps: (fine, low, mid). The published
    segmentation network stops here too (its decoder reads these three and the stride-2 map).
    """

    def __init__(self, width: float = 1.0):
        super().__init__()
        if width not in WIDTHS:
            raise ValueError(f'ESPNetv2 width {width} is not one of {sorted(WIDTHS)}')
        c = WIDTHS[width]
        self.channels = c
        self.level1 = _ConvBN(3, c[0], 3, stride=2)
        self.level2_0 = DownSampler(c[0], c[1], _RECEPTIVE_LIMIT[0])
        self.level3_0 = DownSampler(c[1], c[2], _RECEPTIVE_LIMIT[1])
        self.level3 = nn.ModuleList(EESP(c[2], c[2], limit=_RECEPTIVE_LIMIT[2])
                                    for _ in range(_BLOCKS[0]))
        self.level4_0 = DownSampler(c[2], c[3], _RECEPTIVE_LIMIT[2])
        self.level4 = nn.ModuleList(EESP(c[3], c[3], limit=7) for _ in range(_BLOCKS[1]))

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.levels(image)[1:]

    def levels(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Return the stride-2, -4, -8 and -16 maps."""
        # The image is pooled once per stage, as many times as the features have been halved:
        # pooling it again each stage (3x3, stride 2, pad 1) gives the same sizes as the
        # stride-2 convs for any input.
        x = self.level1(image)
        image = F.avg_pool2d(image, 3, 2, 1)
        image = F.avg_pool2d(image, 3, 2, 1)
        fine = self.level2_0(x, image)
        image = F.avg_pool2d(image, 3, 2, 1)
        low = self.level3_0(fine, image)
        for block in self.level3:
            low = block(low)
        image = F.avg_pool2d(image, 3, 2, 1)
        mid = self.level4_0(low, image)
        for block in self.level4:
            mid = block(mid)
        return x, fine, low, mid


def espnetv2_state(state: dict) -> dict:
    """
    Return the encoder's part of a published ESPNetv2 state dict.

    Segmentation files prefix the encoder with `base_net.`; classification files carry the
    stride-32 stage and classifier, which this encoder does not have.
    """
    if any(k.startswith('base_net.') for k in state):
        state = {k[len('base_net.'):]: v for k, v in state.items() if k.startswith('base_net.')}
    return {k: v for k, v in state.items()
            if not k.startswith(('level5', 'classifier'))}


class _CBR(nn.Module):
    """The decoder's conv + BN + PReLU, nested as `.cbr` in the published files."""

    def __init__(self, cin: int, cout: int, k: int, groups: int = 1):
        super().__init__()
        self.cbr = nn.Sequential(nn.Conv2d(cin, cout, k, 1, (k - 1) // 2, groups=groups,
                                           bias=False),
                                 nn.BatchNorm2d(cout), nn.PReLU(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cbr(x)


class _BR(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.br = nn.Sequential(nn.BatchNorm2d(channels), nn.PReLU(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.br(x)


class _Shuffle(nn.Module):
    def __init__(self, groups: int):
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        return x.view(n, self.groups, c // self.groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class _PyramidPool(nn.Module):
    """Depthwise 3x3 at five scales of a projected map, shuffled and merged."""

    _SCALES = (2.0, 1.5, 1.0, 0.5, 0.1)

    def __init__(self, cin: int, proj: int, cout: int, last: bool = False):
        super().__init__()
        self.projection_layer = _CBR(cin, proj, 1)
        self.stages = nn.ModuleList(nn.Conv2d(proj, proj, 3, 1, 1, groups=proj, bias=False)
                                    for _ in self._SCALES)
        n = len(self._SCALES)
        self.merge_layer = nn.Sequential(_BR(proj * n), _Shuffle(n),
                                         _CBR(proj * n, proj, 3, groups=proj),
                                         nn.Conv2d(proj, cout, 1, bias=last))
        self.br = None if last else _BR(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.projection_layer(x)
        h, w = x.shape[-2:]
        outs = []
        for scale, stage in zip(self._SCALES, self.stages):
            size = (max(5, math.ceil(h * scale)), max(5, math.ceil(w * scale)))
            if scale < 1:
                y = F.interpolate(stage(F.adaptive_avg_pool2d(x, size)), (h, w),
                                  mode='bilinear', align_corners=True)
            elif scale > 1:
                y = F.adaptive_avg_pool2d(stage(F.interpolate(x, size, mode='bilinear',
                                                              align_corners=True)), (h, w))
            else:
                y = stage(x)
            outs.append(y)
        out = self.merge_layer(torch.cat(outs, 1))
        return out if self.br is None else self.br(out)


class _Merge(nn.Module):
    """An encoder map expanded to the decoder's width, scaled per channel by its mean."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.wt_layer = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(cin, cout, 1, bias=False),
                                      nn.Sigmoid())
        self.expansion_layer = _CBR(cin, cout, 3, groups=math.gcd(cin, cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.expansion_layer(x) * self.wt_layer(x)


class ESPNetv2Segmentation(nn.Module):
    """
    The published ESPNetv2 segmentation network, to run its files as they are.

    It is the reference for this encoder (a published Cityscapes file, run whole, labels real
    frames as its authors report) and a real-image teacher; the package's own models put the
    depth-gated head on the encoder instead of this decoder.
    """

    def __init__(self, width: float, num_classes: int = 20):
        super().__init__()
        self.base_net = ESPNetv2Encoder(width)
        c = self.base_net.channels
        dec = (64, 48, 32, num_classes)
        proj = min(num_classes // 2, 16)
        self.bu_dec_l1 = _PyramidPool(c[3], proj, dec[0])
        self.bu_dec_l2 = _PyramidPool(dec[0], proj, dec[1])
        self.bu_dec_l3 = _PyramidPool(dec[1], proj, dec[2])
        self.bu_dec_l4 = _PyramidPool(dec[2], proj, dec[3], last=True)
        self.merge_enc_dec_l2 = _Merge(c[2], dec[0])
        self.merge_enc_dec_l3 = _Merge(c[1], dec[1])
        self.merge_enc_dec_l4 = _Merge(c[0], dec[2])
        for i, ch in zip((2, 3, 4), dec):
            setattr(self, f'bu_br_l{i}', nn.Sequential(nn.BatchNorm2d(ch), nn.PReLU(ch)))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Class scores at the image's size."""
        maps = self.base_net.levels(image)        # strides 2, 4, 8, 16
        out = self.bu_dec_l1(maps[3])
        for i, skip in zip((2, 3, 4), maps[2::-1]):
            out = F.interpolate(out, scale_factor=2, mode='bilinear', align_corners=True)
            out = getattr(self, f'bu_br_l{i}')(getattr(self, f'merge_enc_dec_l{i}')(skip) + out)
            out = getattr(self, f'bu_dec_l{i}')(out)
        return F.interpolate(out, size=image.shape[-2:], mode='bilinear', align_corners=True)
