"""Permutation specs inferred from the traced graph: built-ins, classic CNN families, attention,
and Hugging Face models built from configs (no download).

On every model: the inferred spec passes the function-preservation self-check, and weight
matching recovers a planted permutation exactly (permute A under the spec, match it back,
get A's tensors again).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from engine.nets import (
    BlockPerm,
    PermutationSpec,
    PermutationSpecError,
    apply_permutation,
    check_perm_spec,
    infer_perm_spec,
    permutation_spec,
    random_permutation,
)
from engine.nets.permutation import axis_parts
from engine.probes.connectivity import weight_matching


def partition(spec: PermutationSpec) -> list[list[tuple[str, int]]]:
    """The perms as sets of (key, axis), names forgotten: two specs with the same partition are equal up to renaming."""
    return sorted(sorted(axes) for axes in spec.perm_to_axes.values())


def assert_recovers_planted_permutation(model: nn.Module, spec: PermutationSpec, seed: int = 3) -> None:
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    perms = random_permutation(spec, state, seed=seed)
    assert any(not torch.equal(p, torch.arange(len(p))) for p in perms.values())
    planted = apply_permutation(spec, perms, state)
    assert any(not torch.equal(planted[k], state[k]) for k in state)
    recovered = weight_matching(state, planted, spec).apply(spec, planted)
    for key in state:
        assert torch.equal(recovered[key], state[key]), key


def assert_verified(model: nn.Module, spec: PermutationSpec, x) -> None:
    """The self-check again, explicitly, with another seed, within its own derived tolerance:
    64 * eps64 * (number of state tensors) * max|output| (reordered float64 sums, growing with depth)."""
    import copy

    ref = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        out = ref(**x) if isinstance(x, dict) else ref(x.double() if x.is_floating_point() else x)
    out = getattr(out, "logits", out)
    limit = 64 * torch.finfo(torch.float64).eps * len(model.state_dict()) * float(out.abs().max())
    assert check_perm_spec(model, spec, x, seed=11) <= limit


# ---------------------------------------------------------------- built-in architectures


def test_inferred_spec_equals_the_declared_one_up_to_renaming(case):
    model = case.build(seed=1)
    declared = permutation_spec(model)
    inferred = infer_perm_spec(model, case.inputs(batch=2))
    assert partition(inferred) == partition(declared)
    assert set(inferred.axes_to_perm) == set(model.state_dict())
    assert inferred.fixed == {}


# ---------------------------------------------------------------- torchvision-style ResNet-18


class BasicBlock(nn.Module):
    """As torchvision.models.resnet.BasicBlock: conv-bn-relu-conv-bn + (downsample) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


class ResNet18(nn.Module):
    """torchvision's resnet18 layout (stem conv 7x7 + max-pool, [2, 2, 2, 2] blocks), narrow widths."""

    def __init__(self, widths=(4, 8, 16, 32), n_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, widths[0], 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        c, layers = widths[0], []
        for i, w in enumerate(widths):
            stride = 1 if i == 0 else 2
            layers.append(nn.Sequential(BasicBlock(c, w, stride), BasicBlock(w, w)))
            c = w
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(c, n_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def test_torchvision_style_resnet18():
    torch.manual_seed(0)
    model = ResNet18()
    x = torch.randn(2, 3, 32, 32)
    spec = infer_perm_spec(model, x)
    # one residual stream per stage (the downsample shortcut starts it) + one inner perm per block
    assert len(spec.perm_to_axes) == 4 + 8
    stream = spec.axes_to_perm["layer2.0.downsample.0.weight"][0]
    assert spec.axes_to_perm["layer2.0.conv2.weight"][0] == stream
    assert spec.axes_to_perm["layer2.1.conv2.weight"][0] == stream
    assert spec.axes_to_perm["layer2.0.downsample.1.running_var"] == (stream,)
    assert spec.axes_to_perm["conv1.weight"][0] == spec.axes_to_perm["layer1.1.bn2.bias"][0]
    assert spec.axes_to_perm["fc.weight"] == (None, spec.axes_to_perm["layer4.0.downsample.0.weight"][0])
    assert spec.axes_to_perm["bn1.num_batches_tracked"] == ()
    assert_verified(model, spec, x)
    assert_recovers_planted_permutation(model, spec)


# ---------------------------------------------------------------- VGG with BatchNorm: flatten conv -> linear


class VGG(nn.Module):
    def __init__(self):
        super().__init__()
        cfg, layers, c = [8, "M", 16, 16, "M"], [], 3
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(c, v, 3, padding=1), nn.BatchNorm2d(v), nn.ReLU()]
                c = v
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Linear(16 * 4 * 4, 32), nn.ReLU(), nn.Dropout(), nn.Linear(32, 10))

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


def test_vgg_with_bn_flatten_moves_each_channel_block():
    torch.manual_seed(0)
    model = VGG()
    x = torch.randn(2, 3, 16, 16)
    spec = infer_perm_spec(model, x)
    last_conv = spec.axes_to_perm["features.7.weight"][0]
    # channel c of the last conv is the 4*4 = 16 consecutive inputs [16c, 16c+16) of the first linear layer
    assert spec.axes_to_perm["classifier.0.weight"] == ("classifier.0", BlockPerm(last_conv, block=16))
    assert spec.axes_to_perm["features.8.running_mean"] == (last_conv,)
    assert len(spec.perm_to_axes) == 4
    assert_verified(model, spec, x)
    assert_recovers_planted_permutation(model, spec)


# ---------------------------------------------------------------- MobileNet-style depthwise block


class InvertedResidual(nn.Module):
    """MobileNetV2: 1x1 expand -> 3x3 depthwise -> 1x1 project, with a residual connection."""

    def __init__(self, c: int, expand: int):
        super().__init__()
        h = c * expand
        self.expand = nn.Sequential(nn.Conv2d(c, h, 1, bias=False), nn.BatchNorm2d(h), nn.ReLU6())
        self.depthwise = nn.Sequential(nn.Conv2d(h, h, 3, padding=1, groups=h, bias=False), nn.BatchNorm2d(h),
                                       nn.ReLU6())
        self.project = nn.Sequential(nn.Conv2d(h, c, 1, bias=False), nn.BatchNorm2d(c))

    def forward(self, x):
        return x + self.project(self.depthwise(self.expand(x)))


class MobileNetish(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU6())
        self.blocks = nn.Sequential(InvertedResidual(8, 3), InvertedResidual(8, 2))
        self.multiplier = nn.Conv2d(8, 16, 3, padding=1, groups=8)  # depthwise with channel multiplier 2
        self.head = nn.Linear(16, 5)

    def forward(self, x):
        return self.head(self.multiplier(self.blocks(self.stem(x))).mean((2, 3)))


def test_mobilenet_depthwise_convs_keep_their_input_perm():
    torch.manual_seed(0)
    model = MobileNetish()
    x = torch.randn(2, 3, 8, 8)
    spec = infer_perm_spec(model, x)
    hidden = spec.axes_to_perm["blocks.0.expand.0.weight"][0]
    assert spec.axes_to_perm["blocks.0.depthwise.0.weight"] == (hidden, None, None, None)
    assert spec.axes_to_perm["blocks.0.project.0.weight"][1] == hidden
    stream = spec.axes_to_perm["stem.0.weight"][0]
    # a multiplier-2 depthwise conv: output channels 2c, 2c+1 come from input channel c
    assert spec.axes_to_perm["multiplier.weight"][0] == BlockPerm(stream, block=2)
    assert spec.axes_to_perm["head.weight"] == (None, BlockPerm(stream, block=2))
    assert_verified(model, spec, x)
    assert_recovers_planted_permutation(model, spec)


def test_grouped_convolution_is_kept_fixed_and_listed():
    model = nn.Sequential(nn.Conv2d(3, 8, 1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1, groups=2), nn.ReLU(),
                          nn.Conv2d(8, 4, 1), nn.Flatten(), nn.Linear(4 * 4 * 4, 2))
    spec = infer_perm_spec(model, torch.randn(2, 3, 4, 4))
    assert spec.axes_to_perm["0.weight"][0] is None and spec.axes_to_perm["2.weight"][:2] == (None, None)
    assert "grouped convolution (groups=2)" in spec.fixed["2.weight axis 0"]
    assert spec.axes_to_perm["4.weight"][0] == "4"  # the layer after it still permutes


def test_groupnorm_moves_channels_in_whole_groups_and_layernorm_over_channels_follows_them():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.GroupNorm(2, 8), nn.ReLU(), nn.Conv2d(8, 6, 1),
                          nn.GroupNorm(1, 6), nn.LayerNorm([6, 4, 4]), nn.Flatten(), nn.Linear(6 * 16, 2))
    x = torch.randn(2, 3, 4, 4)
    spec = infer_perm_spec(model, x)
    assert spec.axes_to_perm["0.weight"][0] == BlockPerm("0", block=4)  # 2 groups of 4 channels
    assert spec.axes_to_perm["1.weight"] == (BlockPerm("0", block=4),)
    assert spec.axes_to_perm["3.weight"][:2] == ("3", BlockPerm("0", block=4))
    assert spec.axes_to_perm["4.bias"] == ("3",)  # one group: any channel perm
    assert spec.axes_to_perm["5.weight"] == ("3", None, None)
    assert spec.axes_to_perm["7.weight"] == (None, BlockPerm("3", block=16))
    assert_verified(model, spec, x)
    assert_recovers_planted_permutation(model, spec)


# ---------------------------------------------------------------- DenseNet-style concatenation


class DenseBlock(nn.Module):
    def __init__(self, c: int, growth: int):
        super().__init__()
        self.layer1 = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c, growth, 3, padding=1))
        self.layer2 = nn.Sequential(nn.BatchNorm2d(c + growth), nn.ReLU(), nn.Conv2d(c + growth, growth, 3, padding=1))

    def forward(self, x):
        x = torch.cat([x, self.layer1(x)], 1)
        return torch.cat([x, self.layer2(x)], 1)


class DenseNetish(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 6, 3, padding=1)
        self.block = DenseBlock(6, 4)
        self.head = nn.Linear(6 + 4 + 4, 3)

    def forward(self, x):
        return self.head(self.block(self.stem(x)).mean((2, 3)))


def test_densenet_concatenation_is_a_block_diagonal_perm():
    torch.manual_seed(0)
    model = DenseNetish()
    x = torch.randn(2, 3, 6, 6)
    spec = infer_perm_spec(model, x)
    stem, g1, g2 = "stem", "block.layer1.2", "block.layer2.2"
    assert spec.axes_to_perm["block.layer2.0.weight"] == ((BlockPerm(stem, 1, 0, 6), BlockPerm(g1, 1, 6, 4)),)
    assert spec.axes_to_perm["head.weight"] == (
        None, (BlockPerm(stem, 1, 0, 6), BlockPerm(g1, 1, 6, 4), BlockPerm(g2, 1, 10, 4)))
    assert_verified(model, spec, x)
    assert_recovers_planted_permutation(model, spec)


# ---------------------------------------------------------------- attention


class MHAEncoder(nn.Module):
    def __init__(self, d: int = 8, heads: int = 2):
        super().__init__()
        self.embed = nn.Linear(3, d)
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, 2)

    def forward(self, x):  # (B, T, 3)
        h = self.embed(x)
        a, _ = self.attn(h, h, h)
        return self.head(self.norm(h + a).mean(1))


def test_multihead_attention_heads_are_block_perms():
    torch.manual_seed(0)
    model = MHAEncoder()
    x = torch.randn(2, 5, 3)
    spec = infer_perm_spec(model, x)
    parts = axis_parts(spec.axes_to_perm["attn.in_proj_weight"][0])
    heads = "attn.heads"
    assert [(p.perm, p.block, p.offset) for p in parts] == [(heads, 4, 0), (heads, 4, 8), (heads, 4, 16)]
    assert spec.axes_to_perm["attn.out_proj.weight"] == ("embed", BlockPerm(heads, block=4))
    assert spec.axes_to_perm["attn.in_proj_weight"][1] == "embed"
    assert spec.axes_to_perm["norm.weight"] == ("embed",)
    assert_verified(model, spec, x)
    assert_recovers_planted_permutation(model, spec)


# ---------------------------------------------------------------- what cannot be permuted


class ReadsOneUnit(nn.Module):
    """``h[:, 0]`` reads hidden unit 0 by position: fc1's units cannot move, fc0's still can."""

    def __init__(self):
        super().__init__()
        self.fc0 = nn.Linear(4, 6)
        self.fc1 = nn.Linear(6, 5)
        self.fc2 = nn.Linear(5, 2)

    def forward(self, x):
        h = torch.relu(self.fc1(torch.relu(self.fc0(x))))
        return self.fc2(h) + h[:, 0].unsqueeze(1)


def test_an_op_reading_units_by_position_keeps_that_layer_fixed_and_lists_it():
    model = ReadsOneUnit()
    x = torch.randn(2, 4)
    spec = infer_perm_spec(model, x)
    assert spec.axes_to_perm["fc1.weight"] == (None, "fc0")
    assert spec.axes_to_perm["fc2.weight"] == (None, None)
    assert set(spec.perm_to_axes) == {"fc0"}
    assert set(spec.fixed) == {"fc1.weight axis 0", "fc1.bias axis 0", "fc2.weight axis 1"}
    assert "aten.select reads entry 0 of this axis by position" in spec.fixed["fc1.weight axis 0"]
    assert_recovers_planted_permutation(model, spec)


class CumulativeHidden(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(3, 4)
        self.fc2 = nn.Linear(4, 4)
        self.fc3 = nn.Linear(4, 2)

    def forward(self, x):
        h = torch.relu(self.fc1(x))
        return self.fc3(torch.relu(self.fc2(h)).cumsum(1).prod(0, keepdim=True).expand(len(x), -1))


def test_an_op_without_a_rule_fixes_what_it_touches():
    spec = infer_perm_spec(CumulativeHidden(), torch.randn(2, 3))
    assert set(spec.perm_to_axes) == {"fc1"}  # prod over the batch is fine; cumsum over units is not
    assert "aten.cumsum is not known to commute with permutations" in spec.fixed["fc2.weight axis 0"]


class ScaledByABuffer(nn.Module):
    """Hidden units multiplied by a non-persistent buffer: not in the state_dict, so it cannot follow a perm."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(3, 4)
        self.fc2 = nn.Linear(4, 2)
        self.register_buffer("scale", torch.arange(4.0) + 1, persistent=False)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)) * self.scale)


def test_a_tensor_outside_the_state_dict_pins_what_it_touches():
    spec = infer_perm_spec(ScaledByABuffer(), torch.randn(2, 3))
    assert spec.perm_to_axes == {}
    assert spec.fixed["fc1.weight axis 0"] == ("combined with 'scale', a tensor outside the state_dict that cannot "
                                               "be permuted")
    assert spec.fixed["fc2.weight axis 1"] == spec.fixed["fc1.weight axis 0"]


class Gate(nn.Module):
    def forward(self, x):
        if x.sum() > 0:  # data-dependent control flow
            return x * 2
        return x


class Gated(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 4)
        self.gate = Gate()

    def forward(self, x):
        return self.gate(self.fc(x))


def test_an_untraceable_module_is_named():
    with pytest.raises(PermutationSpecError, match=r"tracing it with torch\.export stopped in module 'gate' \(Gate\)"):
        infer_perm_spec(Gated(), torch.randn(2, 3))


def test_a_wrong_spec_is_refused_naming_the_perm():
    model = ReadsOneUnit()
    wrong = PermutationSpec.from_axes({"fc0.weight": ("h0", None), "fc0.bias": ("h0",), "fc1.weight": ("h1", "h0"),
                                       "fc1.bias": ("h1",), "fc2.weight": (None, "h1")})
    with pytest.raises(PermutationSpecError,
                       match=r"not a symmetry of ReadsOneUnit.*perm 'h1' \(on fc1\.weight axis 0"):
        check_perm_spec(model, wrong, torch.randn(2, 4))


def test_a_model_not_made_by_build_needs_an_example_input():
    with pytest.raises(ValueError, match=r"call engine\.nets\.infer_perm_spec\(model, example_input\)"):
        permutation_spec(ReadsOneUnit())


# ---------------------------------------------------------------- Hugging Face models (torch.fx cannot trace them)


@pytest.fixture
def hf():
    return pytest.importorskip("transformers")


def test_hf_resnet18_shaped_resnet_for_image_classification(hf):
    torch.manual_seed(0)
    config = hf.ResNetConfig(hidden_sizes=[8, 16, 32, 64], depths=[2, 2, 2, 2], layer_type="basic",
                             embedding_size=8, num_labels=10, downsample_in_first_stage=False)
    model = hf.ResNetForImageClassification(config)
    x = torch.randn(2, 3, 32, 32)
    spec = infer_perm_spec(model, x)
    assert len(spec.perm_to_axes) == 4 + 8  # a residual stream per stage + one inner perm per block
    stage = "resnet.encoder.stages.1.layers"
    stream = spec.axes_to_perm[f"{stage}.0.shortcut.convolution.weight"][0]
    assert spec.axes_to_perm[f"{stage}.0.layer.1.convolution.weight"][0] == stream
    assert spec.axes_to_perm[f"{stage}.1.layer.1.normalization.running_mean"] == (stream,)
    assert spec.axes_to_perm[f"{stage}.1.layer.0.convolution.weight"][1] == stream
    assert spec.fixed == {}
    assert_verified(model, spec, x)
    assert_recovers_planted_permutation(model, spec)


def test_hf_small_vit_heads_and_layernorm(hf):
    torch.manual_seed(0)
    config = hf.ViTConfig(image_size=16, patch_size=4, hidden_size=16, num_hidden_layers=2,
                          num_attention_heads=4, intermediate_size=32, num_labels=10)
    model = hf.ViTForImageClassification(config)
    x = torch.randn(2, 3, 16, 16)
    spec = infer_perm_spec(model, x)
    a = "vit.layers.0.attention" if "vit.layers.0.attention.q_proj.weight" in spec.axes_to_perm else None
    if a is None:  # transformers < 5 names the attention layers differently
        pytest.skip("unexpected ViT parameter names in this transformers version")
    stream = spec.axes_to_perm["vit.embeddings.patch_embeddings.projection.weight"][0]
    heads = spec.axes_to_perm[f"{a}.q_proj.weight"][0]
    assert isinstance(heads, BlockPerm) and heads.block == 16 // 4  # one head = head_dim rows
    for proj in ("q_proj", "k_proj", "v_proj"):
        assert spec.axes_to_perm[f"{a}.{proj}.weight"] == (heads, stream)
    assert spec.axes_to_perm[f"{a}.o_proj.weight"] == (stream, heads)
    assert spec.axes_to_perm["vit.embeddings.cls_token"] == (None, None, stream)
    assert spec.axes_to_perm["vit.layernorm.weight"] == (stream,)
    assert spec.axes_to_perm["classifier.weight"] == (None, stream)
    assert_verified(model, spec, x)
    assert_recovers_planted_permutation(model, spec)


def test_hf_tiny_gpt2_fused_heads_and_tied_embeddings(hf):
    torch.manual_seed(0)
    config = hf.GPT2Config(vocab_size=50, n_positions=16, n_embd=16, n_layer=2, n_head=4,
                           bos_token_id=0, eos_token_id=0)  # use_cache=True: inference turns the cache off
    model = hf.GPT2LMHeadModel(config)
    x = torch.randint(0, 50, (2, 8))
    spec = infer_perm_spec(model, x)
    stream = spec.axes_to_perm["transformer.wte.weight"][1]
    # tied: lm_head is wte; its vocab axis is the model's output, so it stays fixed
    assert spec.axes_to_perm["lm_head.weight"] == spec.axes_to_perm["transformer.wte.weight"] == (None, stream)
    assert spec.axes_to_perm["transformer.wpe.weight"] == (None, stream)
    # GPT-2's Conv1D weight is (in, out); c_attn's outputs are q | k | v, each split into 4 heads of 4
    parts = axis_parts(spec.axes_to_perm["transformer.h.1.attn.c_attn.weight"][1])
    heads = parts[0].perm
    assert [(p.perm, p.block, p.offset, p.units) for p in parts] == [(heads, 4, o, 4) for o in (0, 16, 32)]
    assert spec.axes_to_perm["transformer.h.1.attn.c_proj.weight"] == (BlockPerm(heads, block=4), stream)
    assert spec.axes_to_perm["transformer.h.1.ln_2.bias"] == (stream,)
    assert spec.fixed == {}
    assert_verified(model, spec, {"input_ids": x, "use_cache": False})
    assert_recovers_planted_permutation(model, spec)


def test_a_factory_model_behind_an_output_adapter_gets_the_inferred_spec_through_permutation_spec(hf):
    """The route every page takes: ArchSpec(factory=...) with output="logits" -> build -> permutation_spec."""
    from engine.config import ArchSpec
    from engine.nets import build

    spec = ArchSpec(factory="transformers:ResNetForImageClassification", output="logits", kwargs={"config": {
        "num_channels": 3, "num_labels": 10, "hidden_sizes": [8, 16], "depths": [1, 1], "embedding_size": 8}})
    model = build(spec, (3, 16, 16), 10, seed=0)
    pspec = permutation_spec(model)
    assert permutation_spec(model) is pspec  # cached for the model's lifetime
    assert pspec.fixed == {} and pspec.perm_to_axes
    assert_verified(model, pspec, torch.randn(2, 3, 16, 16))
    assert_recovers_planted_permutation(model, pspec)
