"""The plain path peer: Flask, naive preprocessing and the classic network in eager torch.

    gunicorn -w 2 plain_app:app      (from this folder)
"""

from __future__ import annotations

import torch
from classic_net import answer, build_network, plain_input
from flask import Flask, jsonify, request

torch.set_num_threads(1)
network = build_network()
app = Flask(__name__)


@app.get("/health")
def health():
    """Liveness probe."""
    return {"status": "ok"}


@app.post("/predict")
def predict():
    """The upload in the multipart field ``file`` to ``{prediction, confidence}``."""
    upload = request.files.get("file")
    if upload is None:
        return jsonify(error="missing_file"), 400
    return jsonify(answer(network, plain_input(upload.read())))
