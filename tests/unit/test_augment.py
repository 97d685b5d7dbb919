"""Crop-and-flip augmentation: the transformation, its keyed draws, and where it applies."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hpc_fedprune.algorithms.base import ClientPlan
from hpc_fedprune.config import load_config
from hpc_fedprune.errors import InputError
from hpc_fedprune.models import FlatModel, build_model
from hpc_fedprune.rng import Stream
from hpc_fedprune.sim.setup import build_setup
from hpc_fedprune.training.augment import Augmenter
from hpc_fedprune.training.local import LocalTrainer
from tests.unit.test_grouped import alone_and_grouped


def expected(image: np.ndarray, padding: int, top: int, left: int, flip: int) -> np.ndarray:
    """The crop and flip of one (C, H, W) image, the slow obvious way."""
    c, h, w = image.shape
    padded = np.pad(image, ((0, 0), (padding, padding), (padding, padding)))
    window = padded[:, top : top + h, left : left + w]
    return window[:, :, ::-1] if flip else window


def test_crop_offsets_and_flips_are_what_they_claim():
    images = np.arange(2 * 2 * 3 * 4, dtype=np.float32).reshape(2, 2, 3, 4) + 1
    aug = Augmenter("crop_flip", 2, seed=0)
    cases = [(0, 0, 0), (4, 4, 1), (2, 2, 0), (2, 2, 1), (1, 3, 0), (3, 0, 1)]
    for top, left, flip in cases:
        draws = torch.tensor([[top, left, flip], [4 - top, left, 1 - flip]])
        out = aug.apply(torch.from_numpy(images), draws).numpy()
        np.testing.assert_array_equal(out[0], expected(images[0], 2, top, left, flip))
        np.testing.assert_array_equal(out[1], expected(images[1], 2, 4 - top, left, 1 - flip))
    # The centred window without a flip is the image itself.
    same = aug.apply(torch.from_numpy(images), torch.tensor([[2, 2, 0], [2, 2, 0]]))
    np.testing.assert_array_equal(same.numpy(), images)
    # A hand-checked case: shifted one row down and one column right, then mirrored.
    one = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    out = Augmenter("crop_flip", 1, seed=0).apply(one, torch.tensor([[0, 0, 1]]))
    assert out.tolist() == [[[[0.0, 0.0], [1.0, 0.0]]]]


def test_draws_are_keyed_and_in_range():
    aug = Augmenter("crop_flip", 3, seed=5)
    key = (Stream.CLIENT, 4, 17)
    d = aug.draws(key, 2, 500)
    np.testing.assert_array_equal(d, aug.draws(key, 2, 500))  # same key, same draws
    np.testing.assert_array_equal(d, Augmenter("crop_flip", 3, seed=5).draws(key, 2, 500))
    assert not np.array_equal(d, aug.draws(key, 3, 500))  # another step
    assert not np.array_equal(d, aug.draws((Stream.CLIENT, 4, 18), 2, 500))  # another client
    assert not np.array_equal(d, Augmenter("crop_flip", 3, seed=6).draws(key, 2, 500))
    assert d[:, :2].min() == 0 and d[:, :2].max() == 6 and set(d[:, 2]) == {0, 1}
    # A group's packed draws are each client's own, padding rows zero.
    keys = [(Stream.CLIENT, 4, c) for c in (17, 3)]
    packed = aug.group_draws(keys, [[4, 2], [3]], 4, "cpu").numpy()
    np.testing.assert_array_equal(packed[0, 0], aug.draws(keys[0], 0, 4))
    np.testing.assert_array_equal(packed[1, 0, :2], aug.draws(keys[0], 1, 2))
    np.testing.assert_array_equal(packed[0, 1, :3], aug.draws(keys[1], 0, 3))
    assert not packed[1, 0, 2:].any() and not packed[1, 1].any()


def test_disabled_augmentation_returns_the_batch_itself():
    x = torch.randn(3, 1, 4, 4)
    assert Augmenter("none", 4, seed=0).batch(x, (1, 2), 0) is x


def test_local_training_sees_the_augmented_batches():
    config = load_config(None, ["data.augment=crop_flip", "data.crop_padding=2"])
    plain = load_config(None, [])
    shape = (3, 10, 10)
    x = torch.randn(40, *shape, generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, 4, (40,), generator=torch.Generator().manual_seed(1))

    results = []
    for cfg in (config, config, plain):
        net = FlatModel(build_model("small_cnn", shape, 4, seed=0))
        start = net.flat.detach().clone()
        trainer = LocalTrainer(net, cfg, "classification", x, y)
        kw = dict(start=start, plan=ClientPlan(), lr=0.1, indices=np.arange(40))
        trainer.train(client=3, round_index=2, **kw)
        results.append(net.flat.detach().clone())
    assert torch.equal(results[0], results[1])  # repeatable
    assert not torch.equal(results[0], results[2])  # and not the plain batches


def test_grouped_clients_get_the_same_crops_as_alone():
    over = ("data.augment=crop_flip", "data.crop_padding=2")
    alone, _, grouped, _, start, _ = alone_and_grouped(*over)
    torch.testing.assert_close(grouped, alone, rtol=1e-5, atol=2e-6)
    plain, *_ = alone_and_grouped()
    assert not torch.allclose(plain, alone)


def test_augmentation_of_non_images_is_bad_input():
    config = load_config(
        None,
        [
            "data.name=synthetic_volumes",
            "data.shape=[1, 8, 8, 8]",
            "data.num_train=20",
            "data.num_test=10",
            "model.name=cnn3d",
            "partition.num_clients=2",
            "federation.clients_per_round=2",
            "data.augment=crop_flip",
        ],
    )
    with pytest.raises(InputError, match=r"^data\.augment: crop_flip needs images"):
        build_setup(config, 1, "cpu")


@pytest.mark.parametrize(
    ("override", "key"),
    [("data.augment=rotate", "data.augment"), ("data.crop_padding=-1", "data.crop_padding")],
)
def test_bad_values_name_the_key(override, key):
    with pytest.raises(InputError, match=rf"^{key}: "):
        load_config(None, [override])
