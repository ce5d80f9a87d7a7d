import json
import logging
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

import folder_paths
from imaging.normalise import to_model_input
from imaging.preprocess import normalise_digit
from model import DigitClassifier, WeightsError, build_network, card_path
from runtime import backends
from runtime.backend_names import BACKENDS
from runtime.backends import (
    BackendError,
    build_runner,
    check_runner,
    export_onnx,
    network_fingerprint,
    onnx_runner,
)

WEIGHTS = folder_paths.get_full_path("weights", "model.pt")
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def heldout_batch(heldout_digits):
    images, _ = heldout_digits
    return np.stack([to_model_input(normalise_digit(image)) for image in images])


@pytest.fixture(scope="module")
def eager_probabilities(heldout_batch):
    return DigitClassifier(WEIGHTS, "cpu", "eager").predict(heldout_batch)


# torch.compile runs a C++ compiler on the first load (tens of seconds on two
# cores); later loads reuse inductor's on-disk cache.
@pytest.mark.parametrize("backend", [name for name in BACKENDS if name != "onnx-int8"])
def test_every_backend_gives_eager_answers_on_held_out_digits(backend, heldout_batch,
                                                              eager_probabilities):
    classifier = DigitClassifier(WEIGHTS, "cpu", backend)
    assert classifier.backend == backend, "the backend fell back to eager mode"
    probabilities = classifier.predict(heldout_batch)
    np.testing.assert_allclose(probabilities, eager_probabilities, atol=1e-5, rtol=1e-4)
    assert np.array_equal(probabilities.argmax(axis=1), eager_probabilities.argmax(axis=1))
    single = classifier.predict(heldout_batch[:1])
    np.testing.assert_allclose(single, eager_probabilities[:1], atol=1e-5, rtol=1e-4)


def test_the_int8_form_gives_eager_answers_on_held_out_digits(heldout_batch,
                                                               eager_probabilities):
    """Quantized weights (7-bit, see runtime/quantize.py) and activations move probabilities a
    little, never the answer here."""
    classifier = DigitClassifier(WEIGHTS, "cpu", "onnx-int8")
    assert classifier.backend == "onnx-int8"
    probabilities = classifier.predict(heldout_batch)
    assert np.array_equal(probabilities.argmax(axis=1), eager_probabilities.argmax(axis=1))
    # Where the network is unsure rounding moves a probability by up to a few tenths; on
    # average they move by under a thousandth.
    assert np.abs(probabilities - eager_probabilities).max() < 0.3
    assert np.abs(probabilities - eager_probabilities).mean() < 1e-3


def test_weights_without_an_int8_form_serve_the_float_export(tmp_path):
    for name in ("model.pt", "model.onnx"):
        shutil.copy(folder_paths.get_full_path("weights", name), tmp_path / name)
    card = json.loads(card_path(WEIGHTS).read_text())
    del card["onnx_int8"], card["onnx_int8_sha256"]
    card_path(tmp_path / "model.pt").write_text(json.dumps(card))
    assert DigitClassifier(tmp_path / "model.pt", "cpu", "onnx-int8").backend == "onnx"


def test_unknown_backend_is_a_clear_error():
    with pytest.raises(ValueError, match="eager, onnx, onnx-int8, torchscript"):
        DigitClassifier(WEIGHTS, "cpu", "tensorrt")


def test_onnx_session_uses_the_given_thread_count():
    network = build_network("classic").eval()
    runner = onnx_runner(network, CPU, threads=1)
    assert runner.session.get_session_options().intra_op_num_threads == 1


def test_onnx_exports_are_reused_for_the_same_weights():
    network = build_network("classic").eval()
    twin = build_network("classic").eval()
    twin.load_state_dict(network.state_dict())
    assert network_fingerprint(twin) == network_fingerprint(network)
    assert export_onnx(twin) is export_onnx(network)
    with torch.no_grad():
        twin.fc2.bias.add_(1.0)
    assert network_fingerprint(twin) != network_fingerprint(network)


def test_a_runner_that_disagrees_with_eager_mode_is_refused():
    network = build_network("classic").eval()
    with pytest.raises(BackendError, match="differ"):
        check_runner(lambda batch: network(batch) + 0.1, network, CPU)
    with pytest.raises(BackendError, match="shape"):
        check_runner(lambda batch: network(batch)[:, :5], network, CPU)


def test_a_backend_that_cannot_be_built_falls_back_to_eager(monkeypatch, caplog):
    def broken(network, device, threads):
        raise RuntimeError("no compiler here")

    monkeypatch.setitem(backends.BUILDERS, "torchscript", broken)
    with pytest.raises(BackendError, match="no compiler here"):
        build_runner(build_network("classic").eval(), "torchscript", CPU)
    with caplog.at_level(logging.WARNING, logger="backends"):
        classifier = DigitClassifier(WEIGHTS, "cpu", "torchscript")
    assert classifier.backend == "eager"
    assert "falling back to eager mode" in caplog.text


def test_the_served_onnx_file_runs_without_torch():
    """The ONNX backend on the CPU serves from the file beside the weights, torch never imported."""
    script = (
        "import sys\n"
        "from app import create_app\n"
        "for backend in ('onnx', 'onnx-int8'):\n"
        "    app = create_app({'DEVICE': 'cpu', 'BACKEND': backend})\n"
        "    assert app.test_client().get('/model').get_json()['backend'] == backend\n"
        "print('torch' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=folder_paths.base_path(),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_a_tampered_onnx_file_is_refused(tmp_path):
    for name in ("model.pt", "model.json", "model.onnx", "model.int8.onnx"):
        shutil.copy(folder_paths.get_full_path("weights", name), tmp_path / name)
    for name, backend in (("model.onnx", "onnx"), ("model.int8.onnx", "onnx-int8")):
        data = bytearray((tmp_path / name).read_bytes())
        data[-1] ^= 1
        (tmp_path / name).write_bytes(bytes(data))
        with pytest.raises(WeightsError, match="sha256"):
            DigitClassifier(tmp_path / "model.pt", "cpu", backend)
