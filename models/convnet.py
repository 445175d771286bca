"""ConvNet of the IDC / MDC / YOCO code bases (reference he-y/Multisize-Dataset-Condensation/models/convnet.py;
reference he-y/you-only-condense-once/get_training_dynamics.py; docs/algorithms.md#the-dynamics-run).

``depth`` blocks of Conv3x3(bias) -> Norm -> ReLU -> AvgPool(2, 2), then one Linear classifier.

Parameter order (MDC reference models/convnet.py, ConvNet): the modules are kept in one ``nn.ModuleDict`` ``layers``
with the keys ``conv``, ``norm``, ``act``, ``pool`` (in that order), each a ``ModuleList`` over the blocks, and
the classifier is registered last.  ``model.parameters()`` therefore yields
``conv_0.weight, conv_0.bias, ..., conv_{d-1}.bias, norm_0.weight, norm_0.bias, ...,
classifier.weight, classifier.bias``; state-dict keys are ``layers.conv.0.weight`` etc.
"""
import torch.nn as nn

NORMS = ("instance", "batch", "layer", "group", "none")


def _norm_layer(net_norm, width, feat_hw):
    """Norm of one block (MDC reference models/convnet.py, ConvNet). ``feat_hw`` is the conv output side, used by
    'layer'."""
    if net_norm == "instance":
        return nn.GroupNorm(width, width, affine=True)  # instance norm with per-channel affine
    if net_norm == "batch":
        return nn.BatchNorm2d(width)
    if net_norm == "layer":
        # normalises each sample over (C, H, W); elementwise affine, so its weight/bias are 3-D
        return nn.LayerNorm([width, feat_hw, feat_hw], elementwise_affine=True)
    if net_norm == "group":
        return nn.GroupNorm(4, width, affine=True)
    if net_norm == "none":
        return nn.Identity()
    raise ValueError(f"ConvNet: unknown net_norm {net_norm!r}; use one of {', '.join(NORMS)}")


class ConvNet(nn.Module):
    """ConvNet(nclass, nch=3, net_width=128, net_depth=3, net_norm='instance', im_size=(32, 32)).

    For 1-channel input the first conv uses padding 3 (MDC reference models/convnet.py, ConvNet: a 28-px image becomes
    32 px after it).  The classifier input size is computed from the real conv/pool output sizes.
    """

    def __init__(self, nclass, nch=3, net_width=128, net_depth=3, net_norm="instance",
                 im_size=(32, 32)):
        super().__init__()
        if net_norm not in NORMS:
            raise ValueError(f"ConvNet: unknown net_norm {net_norm!r}; use one of "
                             f"{', '.join(NORMS)} ('sn' is not supported, as upstream)")
        if net_depth < 1:
            raise ValueError(f"ConvNet: net_depth must be >= 1, got {net_depth}")
        h, w = (im_size, im_size) if isinstance(im_size, int) else tuple(im_size)
        if h != w:
            raise ValueError(f"ConvNet: square images only, got im_size={im_size}")
        self.nclass, self.net_width, self.net_depth, self.net_norm = nclass, net_width, net_depth, net_norm
        convs, norms, acts, pools = [], [], [], []
        side, in_ch = h, nch
        for d in range(net_depth):
            pad = 3 if (nch == 1 and d == 0) else 1  # MDC reference models/convnet.py, ConvNet
            side = side + 2 * pad - 2                # 3x3 conv, stride 1
            convs.append(nn.Conv2d(in_ch, net_width, kernel_size=3, padding=pad, bias=True))
            norms.append(_norm_layer(net_norm, net_width, side))
            acts.append(nn.ReLU(inplace=True))
            pools.append(nn.AvgPool2d(kernel_size=2, stride=2))
            side //= 2
            if side < 1:
                raise ValueError(f"ConvNet: depth {net_depth} too deep for {h}px images")
            in_ch = net_width
        self.layers = nn.ModuleDict({
            "conv": nn.ModuleList(convs), "norm": nn.ModuleList(norms),
            "act": nn.ModuleList(acts), "pool": nn.ModuleList(pools)})
        self.feat_side = side
        self.num_feat = net_width * side * side
        self.classifier = nn.Linear(self.num_feat, nclass)

    def _block(self, x, d):
        x = self.layers["conv"][d](x)
        x = self.layers["norm"][d](x)  # Identity for 'none' (fixes mdc 10 in docs/reference-differences.md#bugs-fixed)
        x = self.layers["act"][d](x)
        return self.layers["pool"][d](x)

    def forward(self, x):
        for d in range(self.net_depth):
            x = self._block(x, d)
        return self.classifier(x.flatten(1))

    def embed(self, x):
        """Flattened last-block features [B, W*s*s] (MDC reference models/convnet.py; YOCO reference
        get_training_dynamics.py; docs/algorithms.md#the-dynamics-run)."""
        for d in range(self.net_depth):
            x = self._block(x, d)
        return x.flatten(1)

    def get_feature(self, x, idx_from, idx_to=-1):
        """List of block outputs (after pooling) for blocks idx_from..idx_to inclusive.

        ``idx_to = -1`` means just ``idx_from`` (MDC reference models/convnet.py, ConvNet).  MDC uses idx depth-1.
        """
        if idx_to == -1:
            idx_to = idx_from
        if not 0 <= idx_from <= idx_to < self.net_depth:
            raise ValueError(f"ConvNet.get_feature: need 0 <= idx_from <= idx_to < "
                             f"{self.net_depth}, got ({idx_from}, {idx_to})")
        feats = []
        for d in range(idx_to + 1):
            x = self._block(x, d)
            if d >= idx_from:
                feats.append(x)
        return feats


__all__ = ["ConvNet", "NORMS"]
