import json
import shutil

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_info

import folder_paths
from imaging.normalise import to_model_input
from model import ARCHITECTURES, ClassicNet, DigitClassifier, WeightsError, build_network, card_path
from runtime.devices import resolve_device
from runtime.files import file_sha256

WEIGHTS = folder_paths.get_full_path("weights", "model.pt")


@pytest.fixture(scope="module")
def classifier():
    return DigitClassifier(WEIGHTS, device="cpu")


def copy_weights(tmp_path):
    target = tmp_path / "model.pt"
    shutil.copy(WEIGHTS, target)
    shutil.copy(card_path(WEIGHTS), card_path(target))
    return target


def test_committed_weights_match_their_card(classifier):
    card = json.loads(card_path(WEIGHTS).read_text())
    assert card["sha256"] == file_sha256(WEIGHTS) == classifier.sha256
    assert card["architecture"] in ARCHITECTURES
    assert card["validation_accuracy"] >= 0.993
    assert card["command"].startswith("python -m training.train")


def test_committed_weights_are_small():
    assert WEIGHTS.stat().st_size <= 1.5 * 1024 * 1024


@pytest.mark.parametrize("architecture", sorted(ARCHITECTURES))
def test_every_registered_architecture_maps_digits_to_ten_logits(architecture):
    network = build_network(architecture).eval()
    assert network(torch.zeros(3, 1, 28, 28)).shape == (3, 10)


def test_the_classic_network_stays_available_by_name():
    assert isinstance(build_network("classic"), ClassicNet)


def test_loaded_network_is_in_eval_mode_on_the_cpu(classifier):
    assert not classifier.network.training
    assert classifier.device == "cpu"
    assert all(p.device.type == "cpu" for p in classifier.network.parameters())


def test_predict_returns_probabilities_for_a_batch(classifier, heldout_digits):
    images, labels = heldout_digits
    batch = np.stack([to_model_input(image) for image in images[:64]])
    probabilities = classifier.predict(batch)
    assert probabilities.shape == (64, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), np.ones(64), rtol=1e-5)
    assert (probabilities >= 0).all()
    accuracy = (probabilities.argmax(axis=1) == labels[:64]).mean()
    assert accuracy >= 0.95


def test_predict_is_deterministic(classifier, heldout_digits):
    images, _ = heldout_digits
    batch = np.stack([to_model_input(image) for image in images[:32]])
    assert np.array_equal(classifier.predict(batch), classifier.predict(batch))


def test_a_loaded_classifier_leaves_numpys_blas_on_one_thread(classifier):
    blas = [pool for pool in threadpool_info() if pool["user_api"] == "blas"]
    assert blas and all(pool["num_threads"] == 1 for pool in blas)


def test_predict_refuses_a_wrongly_shaped_batch(classifier):
    with pytest.raises(ValueError, match="N, 1, 28, 28"):
        classifier.predict(np.zeros((2, 28, 28), dtype=np.float32))


def test_missing_weights_name_the_file(tmp_path):
    with pytest.raises(WeightsError, match="nothing.pt"):
        DigitClassifier(tmp_path / "nothing.pt", device="cpu")


def test_tampered_weights_are_refused(tmp_path):
    target = copy_weights(tmp_path)
    with open(target, "ab") as stream:
        stream.write(b"tampered")
    with pytest.raises(WeightsError, match="sha256"):
        DigitClassifier(target, device="cpu")


def test_weights_of_another_shape_are_refused(tmp_path):
    target = tmp_path / "model.pt"
    torch.save({"conv1.weight": torch.zeros(3, 3)}, target)
    card_path(target).write_text(json.dumps({"architecture": "classic",
                                             "sha256": file_sha256(target)}))
    with pytest.raises(WeightsError, match=str(target)):
        DigitClassifier(target, device="cpu")


class Payload:
    """Something that is not a tensor: unpickling it would run code."""


def test_pickled_objects_are_never_unpickled(tmp_path):
    target = tmp_path / "model.pt"
    torch.save({"payload": Payload()}, target)
    card_path(target).write_text(json.dumps({"architecture": "classic",
                                             "sha256": file_sha256(target)}))
    with pytest.raises(WeightsError, match="cannot be loaded"):
        DigitClassifier(target, device="cpu")


def test_weights_other_than_the_expected_ones_are_refused(tmp_path):
    target = copy_weights(tmp_path)
    with pytest.raises(WeightsError, match="expected"):
        DigitClassifier(target, device="cpu", expected_sha256="0" * 64)


def test_missing_card_is_reported(tmp_path):
    target = copy_weights(tmp_path)
    card_path(target).unlink()
    with pytest.raises(WeightsError, match="card"):
        DigitClassifier(target, device="cpu")


def test_unknown_architecture_is_reported():
    with pytest.raises(ValueError, match="unknown architecture"):
        build_network("resnet-9000")


def test_device_settings():
    assert resolve_device("cpu") == "cpu"
    expected = "cuda:0" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto") == expected
    assert resolve_device("") == expected
    for bad in ("gpu", "cuda:x", "tpu:0"):
        with pytest.raises(ValueError, match="not valid"):
            resolve_device(bad)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without a GPU")
def test_cuda_without_a_gpu_is_a_clear_error():
    with pytest.raises(ValueError, match="no CUDA device"):
        resolve_device("cuda:0")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_predicts_and_releases_memory(heldout_digits):
    images, _ = heldout_digits
    batch = np.stack([to_model_input(image) for image in images[:64]])
    expected = DigitClassifier(WEIGHTS, device="cpu").predict(batch)
    # cuBLAS and cuDNN keep their workspaces for the whole process: warm them first.
    warm = DigitClassifier(WEIGHTS, device="cuda")
    warm.predict(batch)
    warm.release()
    before = torch.cuda.memory_allocated()

    classifier = DigitClassifier(WEIGHTS, device="cuda")
    assert classifier.device == "cuda:0"
    np.testing.assert_allclose(classifier.predict(batch), expected, atol=1e-4, rtol=1e-4)
    assert torch.cuda.memory_allocated() > before
    classifier.release()
    assert torch.cuda.memory_allocated() == before


def test_release_frees_the_network(tmp_path):
    classifier = DigitClassifier(WEIGHTS, device="cpu")
    classifier.release()
    assert not hasattr(classifier, "network")
