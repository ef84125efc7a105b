"""Brain and image encoders: shapes, the fused layer's equivalence, the gLocal fit."""

import numpy as np
import pytest
import torch
from torch import nn

from visdecode import brain_encoders, image_encoders, synth
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


@pytest.mark.parametrize("channels, times", [(63, 250), (17, 100), (271, 201)])
def test_nice_shapes_follow_the_input(channels, times):
    model = brain_encoders.build("nice", channels, times, 512).eval()
    assert model(torch.randn(3, channels, times)).shape == (3, 512)


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
