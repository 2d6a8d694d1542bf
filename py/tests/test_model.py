"""prcl_worker.model: the PRCL network (prcl-method.md §2, §3, §9, Q-ema-*, Q-opt-1, Q-loss-8/9).

Covers: the §2.5 parameter counts of the ResNet-101 DeepLabV3+ and the uncertainty head; the
§2.1 stride/dilation rewrite for OS16 and OS8 (Bottleneck and BasicBlock trunks); output names
and shapes (small trunk, and ResNet-101 on a tiny input against the §2.5 size arithmetic); the
uncertainty head (range, equality with the released literal form, no overflow where the
literal one gives NaN gradients); the EMA teacher (the given decay, buffer modes, no state of its
own); teacher modes; optimizer groups; loading a local torchvision checkpoint and its
errors; build_model validation; and a few real SGD steps that lower the loss.

ResNet-101 is built once (module fixture); every other forward uses a width-0.25 ResNet-18.
"""

import hashlib
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

from prcl_worker.model import (
    DeepLabV3Plus,
    PrclNet,
    ResNetTrunk,
    UncertaintyHead,
    build_model,
    load_backbone_weights,
    uncertainty_literal,
)
from prcl_worker.model import backbone as backbone_mod
from prcl_worker.model import prcl_net as prcl_net_mod


def nparams(m):
    return sum(p.numel() for p in m.parameters())


def small_net(num_classes=3, rep_dim=16, output_stride=16):
    return PrclNet(num_classes, "resnet18", output_stride, rep_dim, 0.25)


@pytest.fixture(scope="module")
def r101():
    torch.manual_seed(0)
    return DeepLabV3Plus(21)  # resnet101, OS16, rep_dim 256, no weights


# --------------------------------------------------------------------------- §2.5 counts
def test_parameter_counts_resnet101_os16(r101):
    assert nparams(r101) == 59_520_693
    assert nparams(r101.aspp) == 15_535_104
    assert nparams(r101.project) == 12_384
    assert nparams(r101.classifier) == 706_325
    assert nparams(r101.representation) == 766_720
    assert nparams(r101.backbone) == 42_500_160
    assert nparams(UncertaintyHead()) == 143_874
    assert r101.feat_channels == 304
    assert (r101.backbone.low_channels, r101.backbone.high_channels) == (256, 2048)


def test_decoder_layers_are_as_specified(r101):
    convs = [m for m in r101.aspp.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 6 and all(c.bias is None for c in convs)
    assert [c.dilation[0] for c in convs[1:4]] == [6, 12, 18]
    assert [c.padding[0] for c in convs[1:4]] == [6, 12, 18]
    assert not any(isinstance(m, nn.Dropout) for m in r101.modules())
    assert r101.aspp.project[0].in_channels == 1280
    for head, cout in ((r101.classifier, 21), (r101.representation, 256)):
        assert head[0].kernel_size == (3, 3) and head[0].in_channels == 304 and head[0].bias is None
        assert head[3].kernel_size == (1, 1) and head[3].out_channels == cout and head[3].bias is not None


# --------------------------------------------------------------------------- §2.1 rewrite
def conv_geom(c):
    return c.stride, c.dilation, c.padding


def test_layer4_rewrite_resnet101_os16(r101):
    bb = r101.backbone
    assert conv_geom(bb.layer4[0].conv2) == ((1, 1), (1, 1), (1, 1))
    assert conv_geom(bb.layer4[1].conv2) == ((1, 1), (2, 2), (2, 2))
    assert conv_geom(bb.layer4[2].conv2) == ((1, 1), (2, 2), (2, 2))
    assert bb.layer4[0].downsample[0].stride == (1, 1)
    assert bb.layer4[0].downsample[0].kernel_size == (1, 1)
    for blk in bb.layer4:  # 1×1 convs stay plain
        assert conv_geom(blk.conv1) == ((1, 1), (1, 1), (0, 0))
        assert conv_geom(blk.conv3) == ((1, 1), (1, 1), (0, 0))
    # layers 1-3 untouched: layer3 still downsamples, no dilation anywhere
    assert conv_geom(bb.layer3[0].conv2) == ((2, 2), (1, 1), (1, 1))
    assert bb.layer3[0].downsample[0].stride == (2, 2)
    for layer in (bb.layer1, bb.layer2, bb.layer3):
        assert all(m.dilation == (1, 1) for m in layer.modules() if isinstance(m, nn.Conv2d))


def test_rewrite_resnet101_os8():
    bb = ResNetTrunk("resnet101", output_stride=8)
    assert conv_geom(bb.layer3[0].conv2) == ((1, 1), (1, 1), (1, 1))
    assert all(conv_geom(b.conv2) == ((1, 1), (2, 2), (2, 2)) for b in bb.layer3[1:])
    assert conv_geom(bb.layer4[0].conv2) == ((1, 1), (2, 2), (2, 2))
    assert all(conv_geom(b.conv2) == ((1, 1), (4, 4), (4, 4)) for b in bb.layer4[1:])
    assert bb.layer3[0].downsample[0].stride == (1, 1)
    assert bb.layer4[0].downsample[0].stride == (1, 1)
    assert conv_geom(bb.layer2[0].conv2) == ((2, 2), (1, 1), (1, 1))


def test_rewrite_basicblock_and_reduced_width():
    bb = ResNetTrunk("resnet18", output_stride=16, width=0.25)
    assert [bb.layer1[0].conv1.out_channels, bb.layer2[0].conv1.out_channels,
            bb.layer3[0].conv1.out_channels, bb.layer4[0].conv1.out_channels] == [16, 32, 64, 128]
    assert bb.conv1.out_channels == 16
    assert (bb.low_channels, bb.high_channels) == (16, 128)
    assert conv_geom(bb.layer4[0].conv1) == ((1, 1), (1, 1), (1, 1))  # the strided 3×3
    assert conv_geom(bb.layer4[0].conv2) == ((1, 1), (2, 2), (2, 2))
    assert conv_geom(bb.layer4[1].conv1) == ((1, 1), (2, 2), (2, 2))
    assert conv_geom(bb.layer4[1].conv2) == ((1, 1), (2, 2), (2, 2))
    assert bb.layer4[0].downsample[0].stride == (1, 1)
    assert isinstance(bb.layer1[0], torchvision.models.resnet.BasicBlock)
    bb8 = ResNetTrunk("resnet18", output_stride=8, width=0.25)
    assert conv_geom(bb8.layer3[0].conv1) == ((1, 1), (1, 1), (1, 1))
    assert conv_geom(bb8.layer3[1].conv2) == ((1, 1), (2, 2), (2, 2))
    assert conv_geom(bb8.layer4[0].conv1) == ((1, 1), (2, 2), (2, 2))
    assert conv_geom(bb8.layer4[1].conv1) == ((1, 1), (4, 4), (4, 4))


def test_reduced_trunk_has_torchvision_key_layout():
    tv = torchvision.models.resnet18()
    want = {k for k in tv.state_dict() if not k.startswith("fc.")}
    small = ResNetTrunk("resnet18", width=0.25).state_dict()
    assert set(small) == want
    # every tensor is the torchvision one with channel dims scaled by 1/4 (RGB input kept)
    w = small["layer2.0.conv1.weight"]
    assert tuple(w.shape) == (32, 16, 3, 3)
    assert tuple(small["conv1.weight"].shape) == (16, 3, 7, 7)


def test_torchvision_builder_falls_back_to_pretrained_false(monkeypatch):
    calls = []

    def old_builder(pretrained=False, **kw):
        if kw:
            raise TypeError("unexpected keyword argument 'weights'")
        calls.append(pretrained)
        return nn.Identity()

    monkeypatch.setattr(torchvision.models, "resnet18", old_builder)
    assert isinstance(backbone_mod.torchvision_resnet("resnet18"), nn.Identity)
    assert calls == [False]


# --------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("os_", [16, 8])
def test_output_names_and_shapes_small(os_):
    torch.manual_seed(0)
    net = DeepLabV3Plus(5, "resnet18", os_, rep_dim=32, width=0.25)
    assert DeepLabV3Plus.OUTPUTS == ("logits", "rep", "feat")
    assert [net.aspp.convs[i][0].dilation[0] for i in (1, 2, 3)] == \
        ([6, 12, 18] if os_ == 16 else [12, 24, 36])
    x = torch.randn(2, 3, 65, 65)
    out = net(x)
    assert tuple(out) == DeepLabV3Plus.OUTPUTS
    assert out["logits"].shape == (2, 5, 17, 17)
    assert out["rep"].shape == (2, 32, 17, 17)
    assert out["feat"].shape == (2, 304, 17, 17)
    low, high = net.backbone(x)
    assert low.shape == (2, 16, 17, 17)
    assert high.shape == (2, 128, 5 if os_ == 16 else 9, 5 if os_ == 16 else 9)


def test_forward_recomputed_by_hand():
    """§2.2/§2.3 data flow: pooling branch back with align_corners=False, ASPP output to the
    layer1 size with align_corners=True, feat = [low48 ; aspp256], both heads on feat."""
    torch.manual_seed(0)
    net = DeepLabV3Plus(4, "resnet18", 16, rep_dim=8, width=0.25).eval()
    x = torch.randn(2, 3, 49, 49)
    with torch.no_grad():
        out = net(x)
        low, high = net.backbone(x)
        br = [net.aspp.convs[i](high) for i in range(4)]
        pooled = net.aspp.convs[4].conv(high.mean(dim=(2, 3), keepdim=True))
        br.append(F.interpolate(pooled, size=high.shape[-2:], mode="bilinear", align_corners=False))
        a = net.aspp.project(torch.cat(br, 1))
        a = F.interpolate(a, size=low.shape[-2:], mode="bilinear", align_corners=True)
        feat = torch.cat([net.project(low), a], 1)
        wrong = torch.cat([net.project(low), F.interpolate(
            net.aspp(high), size=low.shape[-2:], mode="bilinear", align_corners=False)], 1)
    assert torch.allclose(out["feat"], feat, atol=1e-6)
    assert not torch.allclose(out["feat"], wrong, atol=1e-4)
    assert torch.allclose(out["logits"], net.classifier(feat), atol=1e-5)
    assert torch.allclose(out["rep"], net.representation(feat), atol=1e-5)


def table_sizes(n, os_=16):
    """§2.5 size arithmetic: stem conv 7/2 pad 3, max-pool 3/2 pad 1, then /2 per stage."""
    conv = (n + 2 * 3 - 7) // 2 + 1
    pool = (conv + 2 - 3) // 2 + 1
    l2 = (pool - 1) // 2 + 1
    l3 = (l2 - 1) // 2 + 1
    l4 = l3 if os_ == 16 else l2
    return {"stem": conv, "maxpool": pool, "layer1": pool, "layer2": l2, "layer3": l3, "layer4": l4}


def test_table_arithmetic_matches_section_2_5():
    assert table_sizes(321) == {"stem": 161, "maxpool": 81, "layer1": 81, "layer2": 41,
                                "layer3": 21, "layer4": 21}
    assert table_sizes(512) == {"stem": 256, "maxpool": 128, "layer1": 128, "layer2": 64,
                                "layer3": 32, "layer4": 32}


def test_resnet101_shapes_on_a_small_input(r101):
    seen = {}
    hooks = [getattr(r101.backbone, n).register_forward_hook(
        lambda m, i, o, n=n: seen.__setitem__(n, tuple(o.shape)))
        for n in ("conv1", "maxpool", "layer1", "layer2", "layer3", "layer4")]
    r101.eval()
    try:
        with torch.no_grad():
            out = r101(torch.randn(1, 3, 65, 65))
    finally:
        for h in hooks:
            h.remove()
    s = table_sizes(65)
    assert seen["conv1"] == (1, 64, s["stem"], s["stem"])
    assert seen["maxpool"] == (1, 64, s["maxpool"], s["maxpool"])
    assert seen["layer1"] == (1, 256, s["layer1"], s["layer1"])
    assert seen["layer2"] == (1, 512, s["layer2"], s["layer2"])
    assert seen["layer3"] == (1, 1024, s["layer3"], s["layer3"])
    assert seen["layer4"] == (1, 2048, s["layer4"], s["layer4"])
    h = s["layer1"]
    assert out["logits"].shape == (1, 21, h, h)
    assert out["rep"].shape == (1, 256, h, h)
    assert out["feat"].shape == (1, 304, h, h)


# --------------------------------------------------------------------------- uncertainty head
def test_uncertainty_head_parameters_and_init():
    torch.manual_seed(0)
    head = UncertaintyHead()
    shapes = {n: tuple(p.shape) for n, p in head.named_parameters()}
    assert shapes == {"fc1": (256, 304), "bn1.weight": (256,), "bn1.bias": (256,),
                      "fc2": (256, 256), "gamma": (1,), "beta": (1,)}
    assert head.bn1.affine and not head.bn2.affine
    assert head.gamma.item() == 1.0 and head.beta.item() == 0.0
    # Kaiming-normal, fan-in: std = sqrt(2 / fan_in)
    assert abs(head.fc1.std().item() / math.sqrt(2 / 304) - 1) < 0.05
    assert abs(head.fc2.std().item() / math.sqrt(2 / 256) - 1) < 0.05


def test_uncertainty_head_range_literal_equality_and_weight_norm():
    torch.manual_seed(0)
    head = UncertaintyHead()
    x = torch.randn(4, 304, 5, 5)
    var = head(x)
    assert var.shape == (4, 256, 5, 5)
    assert var.min().item() > 0 and var.max().item() < 1
    assert var.min().item() >= 1 / (1 + 1e6) * (1 - 1e-5)
    assert torch.allclose(var, uncertainty_literal(x, head), rtol=1e-5, atol=1e-7)
    with torch.no_grad():  # stretch z over [-50, 50]-ish so both regimes of step 6 are hit
        head.gamma.fill_(15.0)
    z = head.pre_activation(x)
    assert z.min().item() < -20 and z.max().item() > 20
    assert torch.allclose(head(x), uncertainty_literal(x, head), rtol=1e-5, atol=1e-9)
    # rows are normalised on every forward: rescaling fc1/fc2 rows changes nothing
    ref = head(x)
    with torch.no_grad():
        head.fc1.mul_(torch.rand(256, 1) * 10 + 0.1)
        head.fc2.mul_(7.0)
    assert torch.allclose(head(x), ref, rtol=1e-4, atol=1e-6)


def test_uncertainty_head_no_overflow_where_literal_gives_nan():
    torch.manual_seed(0)
    head = UncertaintyHead()
    with torch.no_grad():
        head.gamma.fill_(1e3)
    x = torch.randn(2, 304, 3, 3)
    assert torch.isinf(torch.exp(head.pre_activation(x))).any()  # the literal form overflows

    lit = uncertainty_literal(x, head)
    lit.sum().backward()
    assert torch.isnan(head.gamma.grad).any()
    head.zero_grad(set_to_none=True)

    var = head(x)
    assert torch.isfinite(var).all() and var.min() >= 0 and var.max() <= 1
    (var * torch.randn_like(var)).sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in head.parameters())


# --------------------------------------------------------------------------- EMA
def perturb(module, scale=1.0):
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p) * scale)


def params(module):
    return [p.detach().clone() for p in module.parameters()]


def test_teacher_is_a_frozen_copy():
    torch.manual_seed(0)
    net = small_net()
    assert all(not p.requires_grad for p in net.teacher.parameters())
    assert all(p.requires_grad for p in net.student.parameters())
    for a, b in zip(net.teacher.state_dict().values(), net.student.state_dict().values()):
        assert torch.equal(a, b)
    assert net.head.in_ch == 304 and net.head.dim == 16


@pytest.mark.parametrize("foreach", [True, False])
def test_ema_update_applies_the_given_decay(monkeypatch, foreach):
    monkeypatch.setattr(prcl_net_mod, "_HAS_FOREACH", foreach)
    torch.manual_seed(0)
    net = small_net()
    perturb(net.student)
    net.ema_update(0.0, "own")  # decay 0: teacher := student
    for t, s in zip(net.teacher.parameters(), net.student.parameters()):
        assert torch.equal(t, s)
    for decay in (0.5, 0.99, 1.0):
        old_t = params(net.teacher)
        perturb(net.student)
        net.ema_update(decay, "own")
        for t, s, o in zip(net.teacher.parameters(), net.student.parameters(), old_t):
            assert torch.allclose(t, decay * o + (1 - decay) * s, atol=1e-6)
    for bad in (-0.1, 1.5, True, "0.9"):
        with pytest.raises(ValueError, match="decay"):
            net.ema_update(bad, "own")


def test_the_net_holds_no_ema_state():
    net = small_net()
    assert not any("ema" in k for k in net.state_dict())
    assert not hasattr(net, "alpha")


def run_bn(module):
    """Change the running statistics of ``module`` with one train-mode forward."""
    module.train()
    with torch.no_grad():
        module(torch.randn(2, 3, 33, 33) * 3 + 1)


def bufs(module):
    return {n: b.clone() for n, b in module.named_buffers()}


def test_ema_buffer_modes():
    torch.manual_seed(0)
    # own (released): teacher buffers untouched by the update
    net = small_net()
    run_bn(net.student)
    before = bufs(net.teacher)
    net.ema_update(0.5, "own")
    assert all(torch.equal(before[n], b) for n, b in net.teacher.named_buffers())
    assert any(not torch.equal(before[n], b) for n, b in net.student.named_buffers())

    # copy
    net = small_net()
    run_bn(net.student)
    net.ema_update(0.5, "copy")
    for (n, t), s in zip(net.teacher.named_buffers(), net.student.buffers()):
        assert torch.equal(t, s), n

    # ema: floats averaged with the decay, integer counters copied
    net = small_net()
    net.ema_update(0.0, "ema")  # decay 0: teacher buffers := student buffers
    run_bn(net.student)
    run_bn(net.student)
    run_bn(net.teacher)
    old = bufs(net.teacher)
    net.ema_update(0.5, "ema")
    n_float = n_int = 0
    for (n, t), s in zip(net.teacher.named_buffers(), net.student.buffers()):
        if t.is_floating_point():
            assert torch.allclose(t, 0.5 * old[n] + 0.5 * s, atol=1e-6), n
            n_float += 1
        else:
            assert torch.equal(t, s) and not torch.equal(t, old[n]), n
            assert n.endswith("num_batches_tracked")
            n_int += 1
    assert n_float > 0 and n_int > 0
    with pytest.raises(ValueError, match="ema_buffers"):
        net.ema_update(0.5, "avg")


# --------------------------------------------------------------------------- forwards
def test_student_forward_two_halves_and_head_on_both():
    torch.manual_seed(0)
    net = small_net(num_classes=4, rep_dim=8)
    net.train()
    x_l, x_u = torch.randn(2, 3, 33, 33), torch.randn(2, 3, 33, 33) * 2 + 1
    out = net.student_forward(x_l, x_u)
    assert set(out) == {"logits_l", "logits_u", "rep", "logits_all", "var"}
    assert out["logits_l"].shape == (2, 4, 9, 9) and out["logits_u"].shape == (2, 4, 9, 9)
    assert out["logits_all"].shape == (4, 4, 9, 9)
    assert out["rep"].shape == (4, 8, 9, 9)
    assert out["var"].shape == (4, 8, 9, 9)
    assert out["var"].requires_grad and out["rep"].requires_grad
    with torch.no_grad():
        sep_l, sep_u = net.student(x_l), net.student(x_u)
        joint = net.student(torch.cat([x_l, x_u]))
        var = net.head(torch.cat([sep_l["feat"], sep_u["feat"]]))
    # BN statistics per half: equal to separate forwards, not to one joint forward
    assert torch.allclose(out["logits_l"], sep_l["logits"], atol=1e-5)
    assert torch.allclose(out["logits_u"], sep_u["logits"], atol=1e-5)
    assert not torch.allclose(out["logits_all"], joint["logits"], atol=1e-3)
    assert torch.allclose(out["rep"], torch.cat([sep_l["rep"], sep_u["rep"]]), atol=1e-5)
    assert torch.allclose(out["var"], var, atol=1e-6)
    # the head is fed the student's feat, not detached: gradient reaches the trunk
    out["var"].sum().backward()
    assert net.student.backbone.conv1.weight.grad.abs().sum() > 0


def test_teacher_forward_modes_restore_flags():
    torch.manual_seed(0)
    net = small_net()
    x = torch.randn(2, 3, 33, 33)
    net.teacher.eval()
    net.teacher.aspp.train()  # a mixed state that must come back exactly
    flags = [m.training for m in net.teacher.modules()]

    before = bufs(net.teacher)
    y = net.teacher_forward(x, mode="train")  # as released
    assert y.shape == (2, 3, 9, 9) and not y.requires_grad
    assert [m.training for m in net.teacher.modules()] == flags
    changed = bufs(net.teacher)
    assert not torch.equal(changed["backbone.bn1.running_mean"], before["backbone.bn1.running_mean"])
    net.teacher.train()
    with torch.no_grad():
        assert torch.allclose(net.teacher(x)["logits"], y, atol=1e-5)  # batch statistics

    net.teacher.eval()
    flags = [m.training for m in net.teacher.modules()]
    before = bufs(net.teacher)
    y_eval = net.teacher_forward(x, mode="eval")
    assert all(torch.equal(before[n], b) for n, b in net.teacher.named_buffers())
    with torch.no_grad():
        assert torch.allclose(net.teacher(x)["logits"], y_eval, atol=1e-6)
    assert [m.training for m in net.teacher.modules()] == flags
    with pytest.raises(ValueError, match="mode"):
        net.teacher_forward(x, mode="test")


# --------------------------------------------------------------------------- optimizer groups
def ids(ps):
    return {id(p) for p in ps}


def test_param_groups_default_and_split():
    net = small_net()
    main, head = net.param_groups(3.2e-3, 5e-5, 5e-4, True)
    assert len(main) == 1 and len(head) == 1
    assert ids(main[0]["params"]) == ids(net.student.parameters())
    assert ids(head[0]["params"]) == ids(net.head.parameters())
    assert (main[0]["lr"], main[0]["weight_decay"]) == (3.2e-3, 5e-4)
    assert (head[0]["lr"], head[0]["weight_decay"]) == (5e-5, 5e-4)
    assert not ids(main[0]["params"]) & ids(net.teacher.parameters())
    torch.optim.SGD(main, lr=3.2e-3, momentum=0.9, nesterov=True)
    torch.optim.SGD(head, lr=5e-5, momentum=0.9, nesterov=True)

    main, head = net.param_groups(0.1, 0.01, 1e-4, decay_norm_and_bias=False)
    assert [g["weight_decay"] for g in main] == [1e-4, 0.0]
    assert [g["lr"] for g in main] == [0.1, 0.1] and [g["lr"] for g in head] == [0.01, 0.01]
    decay, no_decay = ids(main[0]["params"]), ids(main[1]["params"])
    assert not decay & no_decay and decay | no_decay == ids(net.student.parameters())
    norm_and_bias = set()
    for m in net.student.modules():
        if isinstance(m, nn.BatchNorm2d):
            norm_and_bias |= {id(m.weight), id(m.bias)}
        if isinstance(m, nn.Conv2d) and m.bias is not None:
            norm_and_bias.add(id(m.bias))
    assert no_decay == norm_and_bias
    assert ids(head[0]["params"]) == ids([net.head.fc1, net.head.fc2])
    assert ids(head[1]["params"]) == ids([net.head.bn1.weight, net.head.bn1.bias,
                                          net.head.gamma, net.head.beta])
    assert [g["weight_decay"] for g in head] == [1e-4, 0.0]


# --------------------------------------------------------------------------- weights
@pytest.fixture()
def r18_ckpt(tmp_path):
    torch.manual_seed(1)
    tv = torchvision.models.resnet18()
    with torch.no_grad():  # non-trivial running stats too
        for m in tv.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2)
                m.num_batches_tracked.fill_(7)
    path = tmp_path / "resnet18-test.pth"
    torch.save(tv.state_dict(), path)
    return path, tv.state_dict()


def test_load_backbone_weights_into_student_and_teacher(r18_ckpt):
    path, sd = r18_ckpt
    torch.manual_seed(0)
    net = PrclNet(3, "resnet18", 16, 16, 1.0)
    keys = load_backbone_weights(net, str(path))
    assert not any(k.startswith("fc.") for k in keys)
    for trunk in (net.student.backbone, net.teacher.backbone):
        got = trunk.state_dict()
        assert set(got) == {k for k in sd if not k.startswith("fc.")}
        for k, v in got.items():
            assert torch.equal(v, sd[k]), k
    # through build_model, and a checkpoint without num_batches_tracked (old torchvision files)
    old = {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    old_path = path.parent / "old.pth"
    torch.save(old, old_path)
    net2 = build_model({"num_classes": 3, "backbone": "resnet18", "output_stride": 16, "rep_dim": 16,
                        "width": 1.0, "pretrained": str(old_path)})
    assert torch.equal(net2.student.backbone.layer3[1].conv2.weight, sd["layer3.1.conv2.weight"])
    assert torch.equal(net2.teacher.backbone.bn1.running_var, sd["bn1.running_var"])
    # the same weights as safetensors
    import safetensors.torch
    st_path = path.parent / "resnet18-test.safetensors"
    safetensors.torch.save_file({k: v.contiguous() for k, v in sd.items()}, str(st_path))
    net3 = PrclNet(3, "resnet18", 16, 16, 1.0)
    assert load_backbone_weights(net3, str(st_path)) == keys
    assert torch.equal(net3.student.backbone.layer3[1].conv2.weight, sd["layer3.1.conv2.weight"])


def _sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_weights_from_the_driver_are_checked_against_its_sha256(r18_ckpt, tmp_path):
    from prcl_worker.model.weights import read_state_dict
    path, sd = r18_ckpt
    digest = _sha256(path)
    assert set(read_state_dict(path, digest, trusted=True)) == set(sd)
    # a file swapped after the driver hashed it
    with pytest.raises(ValueError, match=f"sha256 {_sha256(path)[:8]}.*driver checked a file with sha256 {'0' * 64}"):
        read_state_dict(path, "0" * 64, trusted=True)
    cfg = dict(MODEL, width=1.0, num_classes=3, pretrained={"path": str(path), "sha256": "f" * 64, "trusted": True})
    with pytest.raises(ValueError, match="changed in between"):
        build_model(cfg)


def test_an_unknown_pickle_file_needs_trust_before_torch_2_6(r18_ckpt, tmp_path, monkeypatch):
    import safetensors.torch

    from prcl_worker.model import weights as weights_mod
    path, sd = r18_ckpt
    digest = _sha256(path)
    st_path = tmp_path / "r18.safetensors"
    safetensors.torch.save_file({k: v.contiguous() for k, v in sd.items()}, str(st_path))
    for version in ("1.13.1", "2.5.1+cu124", "2.6.0", "2.10.0"):
        monkeypatch.setattr(weights_mod.torch, "__version__", version)
        old = weights_mod.torch_version() < (2, 6)
        if old:
            with pytest.raises(ValueError, match=f"pickle-based.*{digest}.*CVE-2025-32434.*--trust-weights"):
                weights_mod.read_state_dict(path, digest, trusted=False)
        else:
            assert set(weights_mod.read_state_dict(path, digest, trusted=False)) == set(sd)
        # trusted (catalog or the user's word), and safetensors on any torch
        assert set(weights_mod.read_state_dict(path, digest, trusted=True)) == set(sd)
        assert set(weights_mod.read_state_dict(st_path, _sha256(st_path), trusted=False)) == set(sd)


def test_load_backbone_weights_errors(r18_ckpt, tmp_path):
    path, sd = r18_ckpt
    net = PrclNet(3, "resnet18", 16, 16, 1.0)
    ref = net.student.backbone.conv1.weight.detach().clone()

    missing = tmp_path / "nope" / "resnet101.pth"
    with pytest.raises(FileNotFoundError, match="resnet101.pth"):
        load_backbone_weights(net, missing)

    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"this is not a checkpoint")
    with pytest.raises(ValueError, match="junk.pth"):
        load_backbone_weights(net, junk)

    not_dict = tmp_path / "list.pth"
    torch.save([torch.zeros(2)], not_dict)
    with pytest.raises(ValueError, match="list.pth.*state dict"):
        load_backbone_weights(net, not_dict)

    renamed = dict(sd)
    renamed["layer1.0.convX.weight"] = renamed.pop("layer1.0.conv1.weight")
    renamed_path = tmp_path / "renamed.pth"
    torch.save(renamed, renamed_path)
    with pytest.raises(ValueError) as e:
        load_backbone_weights(net, renamed_path)
    msg = str(e.value)
    assert "renamed.pth" in msg and "layer1.0.conv1.weight" in msg and "layer1.0.convX.weight" in msg
    assert "(64, 64, 3, 3)" in msg

    reshaped = dict(sd)
    reshaped["layer2.0.bn1.weight"] = torch.ones(5)
    reshaped_path = tmp_path / "reshaped.pth"
    torch.save(reshaped, reshaped_path)
    with pytest.raises(ValueError, match=r"reshaped\.pth.*layer2\.0\.bn1\.weight: checkpoint \(5\) vs model \(128\)"):
        load_backbone_weights(net, reshaped_path)

    # a full-width checkpoint into a reduced-width trunk: many mismatches, first ~10 listed
    small = small_net()
    with pytest.raises(ValueError) as e:
        load_backbone_weights(small, path)
    assert "resnet18-test.pth" in str(e.value) and "more" in str(e.value)
    assert str(e.value).count("shape ") == 10
    # nothing was loaded by the failed attempts
    assert torch.equal(net.student.backbone.conv1.weight, ref)


# --------------------------------------------------------------------------- build_model
MODEL = {"num_classes": 3, "backbone": "resnet18", "output_stride": 16, "rep_dim": 16, "width": 0.25,
         "pretrained": None}


def test_build_model_values():
    net = build_model({"num_classes": 4, "backbone": "resnet18", "width": 0.25, "rep_dim": 8,
                       "output_stride": 8, "pretrained": None})
    assert isinstance(net, PrclNet)
    assert net.student.classifier[3].out_channels == 4 and net.student.rep_dim == 8
    assert net.student.backbone.output_stride == 8 and net.student.backbone.high_channels == 128


@pytest.mark.parametrize("key,value", [
    ("num_classes", 0), ("num_classes", 2.5), ("num_classes", True), ("backbone", "resnet34"),
    ("output_stride", 32), ("rep_dim", -1), ("width", 0), ("width", "half"),
    ("pretrained", 3),
])
def test_build_model_rejects_bad_values(key, value):
    cfg = dict(MODEL)
    cfg[key] = value
    with pytest.raises(ValueError, match=key):
        build_model(cfg)


@pytest.mark.parametrize("key", sorted(MODEL))
def test_build_model_needs_every_key(key):
    cfg = {k: v for k, v in MODEL.items() if k != key}
    with pytest.raises(ValueError, match=f"{key}: required"):
        build_model(cfg)


def test_build_model_rejects_unknown_keys():
    with pytest.raises(ValueError, match="dropout"):
        build_model(dict(MODEL, dropout=0.1))
    with pytest.raises(ValueError, match="ema_alpha"):
        build_model(dict(MODEL, ema_alpha=0.99))


# --------------------------------------------------------------------------- training
def test_a_few_sgd_steps_lower_the_loss():
    torch.manual_seed(0)
    net = small_net(num_classes=3, rep_dim=8)
    net.train()
    main, head = net.param_groups(0.02, 0.02, 5e-4, True)
    opt = torch.optim.SGD(main, lr=0.02, momentum=0.9, nesterov=True)
    opt_head = torch.optim.SGD(head, lr=0.02, momentum=0.9, nesterov=True)
    g = torch.Generator().manual_seed(0)
    x_l, x_u = torch.randn(2, 3, 33, 33, generator=g), torch.randn(2, 3, 33, 33, generator=g)
    cols = torch.arange(33)
    y = (cols[None, None, :] * 3 // 33).expand(4, 33, 33).clone()  # three vertical bands
    y[:, :2] = -1  # some ignored pixels
    teacher0 = params(net.teacher)
    losses = []
    for _ in range(6):
        out = net.student_forward(x_l, x_u)
        logits = F.interpolate(out["logits_all"], size=(33, 33), mode="bilinear", align_corners=True)
        loss = F.cross_entropy(logits, y, ignore_index=-1) + 1e-3 * out["var"].mean()
        opt.zero_grad(set_to_none=True)
        opt_head.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        opt_head.step()
        net.ema_update(0.9, "own")
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0] - 0.1, losses
    assert net.head.fc1.grad is not None and net.head.fc1.grad.abs().sum() > 0
    assert any(not torch.equal(a, b) for a, b in zip(teacher0, net.teacher.parameters()))
