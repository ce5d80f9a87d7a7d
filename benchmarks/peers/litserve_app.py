"""LitServe peer: the classic network with the plain preprocessing, two CPU workers.

    python litserve_app.py --port 8000 [--api-servers 1] [--fast-queue]
"""

from __future__ import annotations

import argparse

import litserve as ls
import torch
from classic_net import answer, build_network, plain_input


class ClassicAPI(ls.LitAPI):
    """Decode the multipart upload ``file``, run the network, answer prediction and confidence."""

    def setup(self, device: str) -> None:
        """Build the network in this inference worker, with one torch thread."""
        torch.set_num_threads(1)
        self.network = build_network()

    def decode_request(self, request) -> torch.Tensor:
        """The form's ``file`` upload to the network's input."""
        return plain_input(request["file"].file.read())

    def predict(self, inputs: torch.Tensor) -> dict:
        """The answer for one image."""
        return answer(self.network, inputs)

    def encode_response(self, output: dict) -> dict:
        """The answer is JSON already."""
        return output


def main() -> None:
    """Serve on 127.0.0.1 until terminated."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2, help="inference workers")
    parser.add_argument("--api-servers", type=int, default=None, help="uvicorn processes")
    parser.add_argument("--fast-queue", action="store_true", help="ZeroMQ between processes")
    args = parser.parse_args()
    server = ls.LitServer(
        ClassicAPI(max_batch_size=1),
        accelerator="cpu",
        devices=1,
        workers_per_device=args.workers,
        timeout=30,
        fast_queue=args.fast_queue,
    )
    server.run(host="127.0.0.1", port=args.port, num_api_servers=args.api_servers,
               log_level="warning", generate_client_file=False, access_log=False)


if __name__ == "__main__":
    main()
