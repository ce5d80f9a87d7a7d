import numpy as np
import torch

import folder_paths
from training import augment

FIXTURE = folder_paths.get_full_path("tests", "fixtures/heldout_digits.npz")


def test_augmented_digits_depend_only_on_seed_epoch_and_index():
    with np.load(FIXTURE) as data:
        images, labels = data["images"][:16], data["labels"][:16]
    dataset = augment.AugmentedDigits(images, labels, seed=3)
    first = [dataset[i][0] for i in range(len(dataset))]
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, num_workers=2)
    assert torch.equal(torch.cat([inputs for inputs, _ in loader]), torch.stack(first))
    dataset.epoch = 1
    assert not torch.equal(dataset[0][0], first[0])


def test_augmented_digits_are_centred_as_uploads_are():
    with np.load(FIXTURE) as data:
        digit = data["images"][0]
    varied = augment.augment_digit(digit, torch.Generator().manual_seed(0))
    assert varied.shape == (28, 28) and varied.dtype == np.uint8
    rows, cols = np.nonzero(varied)
    assert max(rows.max() - rows.min(), cols.max() - cols.min()) + 1 == 20  # the 20x20 box
    centre = np.average(np.indices(varied.shape).reshape(2, -1), axis=1,
                        weights=varied.ravel().astype(float))
    assert np.abs(centre - 14).max() <= 1.0


def test_copies_made_beforehand_are_the_epochs_pictures():
    with np.load(FIXTURE) as data:
        images, labels = data["images"][:12], data["labels"][:12]
    digits = augment.AugmentedDigits(images, labels, seed=5)
    copies = augment.make_copies(digits, 2, workers=2)
    assert copies.shape == (2, 12, 28, 28) and copies.dtype == np.uint8
    for epoch in (1, 2):
        digits.epoch = epoch
        assert np.array_equal(copies[epoch - 1], np.stack([digits.picture(i) for i in range(12)]))
    copied = augment.CopiedDigits(copies, labels)
    copied.epoch = 3  # cycles back to the first copy
    digits.epoch = 1
    assert torch.equal(copied[4][0], digits[4][0])


def test_elastic_distortion_bends_the_digit_but_keeps_its_ink():
    with np.load(FIXTURE) as data:
        digit = torch.from_numpy(data["images"][0]).float().div(255).unsqueeze(0)
    bent = augment.elastic_distortion(digit, 34.0, 4.0, torch.Generator().manual_seed(0))
    assert bent.shape == digit.shape
    assert float((bent - digit).abs().max()) > 0.2  # moved
    assert abs(float(bent.sum()) / float(digit.sum()) - 1) < 0.25  # not wiped out
    assert float(augment.elastic_distortion(digit, 0.0, 4.0, torch.Generator()).sub(digit)
                 .abs().max()) < 1e-4  # no strength, no change
