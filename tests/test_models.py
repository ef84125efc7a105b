"""Brain and image encoders: shapes, the fused layer's equivalence, the gLocal fit."""

import numpy as np
import pytest
import torch
from torch import nn

from visdecode import brain_encoders, image_encoders
from visdecode.datasets import synthetic_things as synth
from visdecode.errors import InputError


def test_fused_conv_pool_equals_conv_then_pool():
    torch.manual_seed(0)
    fused = brain_encoders.ConvAvgPool(40, 25, 51, 5)
    plain = nn.Sequential(nn.Conv2d(1, 40, (1, 25)), nn.AvgPool2d((1, 51), (1, 5)))
    plain[0].load_state_dict(fused.conv.state_dict())
    x = torch.randn(4, 1, 63, 250, requires_grad=True)
    a, b = fused(x), plain(x)
    assert a.shape == b.shape == (4, 40, 63, 36)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    # and the same gradients for the conv weights
    ga = torch.autograd.grad(a.square().sum(), fused.conv.weight)[0]
    gb = torch.autograd.grad(b.square().sum(), plain[0].weight)[0]
    torch.testing.assert_close(ga, gb, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", sorted(brain_encoders.REGISTRY))
@pytest.mark.parametrize("channels, times", [(63, 250), (17, 100), (271, 201)])
def test_shapes_follow_the_input(name, channels, times):
    model = brain_encoders.build(name, channels, times, 768, n_subjects=2).eval()
    out = model(torch.randn(3, channels, times), torch.tensor([0, 1, -1]))
    assert out.shape == (3, 768) and torch.isfinite(out).all()


def test_nice_equals_the_published_layout():
    """The published NICE (conv, then pool) with the same weights gives the same output."""
    from published import PublishedNICE

    torch.manual_seed(0)
    published = PublishedNICE().eval()
    ours = brain_encoders.build("nice", 63, 250, 512).eval()
    ours.load_state_dict(published.visdecode_state_dict())
    x = torch.randn(5, 63, 250)
    torch.testing.assert_close(ours(x), published(x), rtol=1e-4, atol=1e-5)


def test_published_sizes():
    assert brain_encoders.build("eegnet", 63, 250, 512).projection.in_features == 16 * 7
    conformer = brain_encoders.build("eegconformer", 63, 250, 512)
    assert conformer.projection.in_features == 40 * 44  # (250 - 10 + 1 - 25) // 5 + 1 tokens
    assert len(conformer.blocks) == 2 and conformer.blocks[0].heads == 1
    atms = brain_encoders.build("atms", 63, 250, 512, n_subjects=9)
    assert atms.subjects.weight.shape == (9, 250) and atms.projector[0].in_features == 1440


def test_eegnet_spatial_filters_are_max_norm_constrained():
    model = brain_encoders.build("eegnet", 8, 128, 16)
    conv = model.features[2]
    with torch.no_grad():
        conv.weight.mul_(100)
    model.train()(torch.randn(4, 8, 128))
    assert conv.weight.flatten(1).norm(dim=1).max() <= 1.0 + 1e-5


def test_atms_subject_token_is_used_and_unseen_subjects_get_the_mean():
    torch.manual_seed(0)
    model = brain_encoders.build("atms", 17, 100, 32, n_subjects=3).eval()
    x = torch.randn(1, 17, 100).repeat(3, 1, 1)
    out = model(x, torch.tensor([0, 1, 2]))
    assert (out[0] - out[1]).abs().max() > 1e-4  # the subject changes the output
    unseen = model(x[:1], torch.tensor([-1]))
    with torch.no_grad():
        model.subjects.weight[0] = model.subjects.weight.mean(0)
    torch.testing.assert_close(unseen, model(x[:1], torch.tensor([0])))


def test_nice_has_the_published_size():
    model = brain_encoders.build("nice", 63, 250, 1024)
    assert model.projector[0].in_features == 40 * 36  # 1440, as in NICE


def test_unknown_encoders_are_named():
    with pytest.raises(InputError, match="unknown brain encoder 'eegnetx'"):
        brain_encoders.build("eegnetx", 63, 250, 512)
    with pytest.raises(InputError, match="unknown image encoder 'clip'"):
        image_encoders.get("clip")


def test_missing_weights_name_the_file(tmp_path):
    with pytest.raises(InputError, match="synth_resnet18.pt.*visdecode synth encoders"):
        image_encoders.load("synth_resnet18", tmp_path)


def test_glocal_fit_learns_the_judgements():
    """Embeddings that hide the judged features among loud nuisance dimensions: the fitted
    transform must predict held-out odd-one-out choices better than the raw embedding."""
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(300, 4))
    emb = np.concatenate([feats * 0.2, rng.normal(size=(300, 28)) * 2.0], axis=1)
    trip, odd = synth.simulate_odd_one_out(feats, 6000, rng, noise=0.1)
    _, fit = image_encoders.fit_glocal(emb.astype(np.float32), trip, odd, steps=300)
    assert fit["val_accuracy_after"] > fit["val_accuracy_before"] + 0.2
