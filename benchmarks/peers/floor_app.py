"""The HTTP floor: Flask reads the upload and answers a constant, with no image work at all.

    gunicorn -w 2 floor_app:app      (from this folder)
"""

from __future__ import annotations

from flask import Flask, jsonify, request

app = Flask(__name__)
CONSTANT = {"prediction": 0, "confidence": 1.0}


@app.get("/health")
def health():
    """Liveness probe."""
    return {"status": "ok"}


@app.post("/predict")
def predict():
    """Read every byte of the multipart field ``file``, then answer the same JSON."""
    request.files["file"].read()
    return jsonify(CONSTANT)
