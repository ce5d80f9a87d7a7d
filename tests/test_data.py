import numpy as np

from training.data import held_out_mask, load_digits, split_subset


def test_held_out_part_is_every_tenth_digit_of_every_class():
    mask = held_out_mask(10_000)
    assert mask.sum() == 1000
    assert mask[9] and mask[19] and not mask[10]


def test_split_keeps_the_held_out_digits_out_of_training(tmp_path):
    images = np.arange(30 * 28 * 28, dtype=np.int64).reshape(30, 28, 28).astype(np.uint8)
    labels = np.repeat(np.arange(3), 10)
    path = tmp_path / "digits.npz"
    np.savez(path, images=images, labels=labels.astype(np.uint8))
    loaded_images, loaded_labels = load_digits(path)
    assert loaded_labels.dtype == np.int64
    (train_images, train_labels), (held_images, held_labels) = split_subset(loaded_images,
                                                                            loaded_labels)
    assert len(train_images) == 27 and len(held_images) == 3
    assert held_labels.tolist() == [0, 1, 2]
    assert np.array_equal(held_images[1], images[19])
