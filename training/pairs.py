"""Train the pair reader: a small network that reads two touching digits at once, and write
its weights, ONNX export and card into ``weights/``.

    python -m training.pairs                       # pairs of the MNIST subset's training digits
    python -m training.pairs --mnist-root ~/data   # of torchvision's MNIST files instead

The segmenter cuts a group of ink too wide for one digit where its ink is
thinnest; two digits that touch along a stroke often have no such place. The
pair reader reads such a group whole (``imaging.pairs``), as two digits or as
no pair. Its pairs are composed here from training digits only (the subset's
held-out tenth, which the tests and benchmarks write their numbers with, is
never seen; it validates): two digits of slightly different heights on a
wobbly baseline pushed together until their strokes overlap, the pair slanted;
and, labelled no pair on both heads, one digit alone (a fifth of them), perhaps
stretched, and drawings that are no digits at all (a tenth: the letters,
shapes, scribbles, textures, objects and noise ``training.nondigits`` draws to
fit the non-digit head, perhaps stretched), so that ink the network doubts is a
digit is not read as two of them instead. Reproducible: fixed seeds,
deterministic kernels.
"""

from __future__ import annotations

import argparse
import io
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, TensorDataset

import folder_paths
from imaging.pairs import pair_input
from model import DATA_CREDIT, card_path, onnx_path
from network.pair_network import NOT_A_PAIR, PairNet
from runtime.backends import build_runner, export_onnx
from runtime.files import file_sha256, write_atomically
from runtime.pair_reader import PAIR_WEIGHTS
from training.data import default_subset, training_splits
from training.nondigits import LETTERS, FontsMissing, drawn, fonts_for, letter
from training.touching import coverage_of, first_touch
from training.train import seed_everything

HEIGHT = 40  # pairs are composed at this digit height, in pixels
HEIGHT_RANGE = (0.9, 1.05)  # each digit's height, as a share of HEIGHT ...
WOBBLE = 0.05  # ... how far it rides off the baseline ...
OVERLAP = (0, 0.08)  # ... how far past first touch the right digit is pushed ...
SLANT_DEGREES = 10.0  # ... and the pair's slant, either way
SINGLE_SHARE = 0.2  # this share of the examples are one digit: no pair ...
DRAWING_SHARE = 0.1  # ... and this share drawings of no digit (training.nondigits)
DRAWING_KINDS = ("letters", "shapes", "scribbles", "textures", "objects", "noise")
STRETCH = (1.0, 1.6)  # a single digit is widened by up to this much
INK_FLOOR = 0.1  # coverage below this is paper, as the service's ink maps leave it


def slanted(coverage: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Sheared by up to ``SLANT_DEGREES`` either way."""
    shear = float(np.tan(np.radians(rng.uniform(-SLANT_DEGREES, SLANT_DEGREES))))
    height, width = coverage.shape
    pad = int(abs(shear) * height) + 1
    data = (1.0, shear, -shear * height / 2 - pad, 0.0, 1.0, 0.0)
    sheared = Image.fromarray(coverage, mode="F").transform(
        (width + 2 * pad, height), Image.Transform.AFFINE, data, Image.Resampling.BILINEAR)
    return np.asarray(sheared, dtype=np.float32)


def compose_pair(first: np.ndarray, second: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Two 28x28 digits touching side by side, slanted: an ink map (0..255)."""
    pieces = [coverage_of(d, round(HEIGHT * rng.uniform(*HEIGHT_RANGE))) for d in (first, second)]
    tops = [round(HEIGHT * rng.uniform(-WOBBLE, WOBBLE)) + HEIGHT - p.shape[0] for p in pieces]
    shift = first_touch(pieces[0], pieces[1], tops[0], tops[1])
    shift -= round(HEIGHT * rng.uniform(*OVERLAP))
    left = pieces[0].shape[1] + shift
    origin = max(0, -left)
    lowest = min(tops)
    width = max(origin + pieces[0].shape[1], origin + left + pieces[1].shape[1])
    line = np.zeros((2 * HEIGHT, width), dtype=np.float32)
    for x, top, piece in ((origin, tops[0], pieces[0]), (origin + left, tops[1], pieces[1])):
        area = line[top - lowest : top - lowest + piece.shape[0], x : x + piece.shape[1]]
        np.maximum(area, piece, out=area)
    return inked(slanted(line, rng))


def compose_single(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One 28x28 digit, perhaps widened, slanted: an ink map (0..255)."""
    piece = coverage_of(digit, round(HEIGHT * rng.uniform(*HEIGHT_RANGE)),
                        rng.uniform(*STRETCH))
    return inked(slanted(np.pad(piece, 2), rng))


def compose_drawing(rng: np.random.Generator, fonts: list) -> np.ndarray:
    """A drawing of no digit (letters only where ``fonts`` has some), perhaps widened: an
    ink map (0..255)."""
    kinds = DRAWING_KINDS if fonts else DRAWING_KINDS[1:]
    kind = kinds[int(rng.integers(len(kinds)))]
    coverage = (letter(rng, fonts, LETTERS) if kind == "letters"
                else drawn(kind, "fit", rng))
    if not coverage.any():
        coverage = np.pad(np.ones((8, 8), dtype=np.float32), 4)
    height, width = coverage.shape
    stretched = Image.fromarray(coverage.astype(np.float32), mode="F").resize(
        (max(1, round(width * rng.uniform(*STRETCH))), height), Image.Resampling.BILINEAR)
    return inked(np.asarray(stretched, dtype=np.float32))


def inked(coverage: np.ndarray) -> np.ndarray:
    """Coverage as an ink map: faint coverage is paper, the rest 0..255."""
    return np.where(coverage >= INK_FLOOR, coverage, 0.0).astype(np.float32) * 255.0


def composed(images: np.ndarray, labels: np.ndarray, count: int,
             seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` pair inputs and their (left, right) labels, ``SINGLE_SHARE`` of them single
    digits and ``DRAWING_SHARE`` drawings, labelled ``NOT_A_PAIR`` on both heads."""
    rng = np.random.default_rng(seed)
    try:
        fonts = fonts_for("fit")
    except FontsMissing:
        fonts = []
    inputs = np.empty((count, *PairNet.input_shape), dtype=np.float32)
    targets = np.empty((count, 2), dtype=np.int64)
    for index in range(count):
        draw = rng.random()
        if draw < DRAWING_SHARE:
            inputs[index] = pair_input(compose_drawing(rng, fonts))
            targets[index] = NOT_A_PAIR
        elif draw < DRAWING_SHARE + SINGLE_SHARE:
            chosen = int(rng.integers(len(images)))
            inputs[index] = pair_input(compose_single(images[chosen], rng))
            targets[index] = NOT_A_PAIR
        else:
            a, b = (int(i) for i in rng.integers(len(images), size=2))
            inputs[index] = pair_input(compose_pair(images[a], images[b], rng))
            targets[index] = labels[a], labels[b]
    return inputs, targets


def pair_accuracy(network: PairNet, loader: DataLoader) -> float:
    """The share of examples both of whose heads are right."""
    network.eval()
    right = 0
    with torch.inference_mode():
        for inputs, targets in loader:
            left, right_logits = network(inputs)
            both = (left.argmax(1) == targets[:, 0]) & (right_logits.argmax(1) == targets[:, 1])
            right += int(both.sum())
    return right / len(loader.dataset)


def save_pair_reader(network: PairNet, path: Path, card: dict) -> None:
    """The ``state_dict``, its ONNX export (checked against the network) and the card with
    both sha256s, the card written last."""
    network = network.cpu().eval()
    build_runner(network, "onnx", torch.device("cpu"), threads=1)  # raises if it disagrees
    buffer = io.BytesIO()
    torch.save({k: v.detach() for k, v in network.state_dict().items()}, buffer)
    write_atomically(path, buffer.getvalue())
    exported = onnx_path(path)
    write_atomically(exported, export_onnx(network))
    card = {**card, "weights": path.name, "sha256": file_sha256(path),
            "onnx": exported.name, "onnx_sha256": file_sha256(exported)}
    write_atomically(card_path(path), json.dumps(card, indent=2) + "\n")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=default_subset(), help="the subset .npz")
    parser.add_argument("--mnist-root", type=Path,
                        help="compose pairs of torchvision's MNIST files in this folder instead")
    parser.add_argument("--pairs", type=int, default=40000, help="training examples composed")
    parser.add_argument("--validation-pairs", type=int, default=4000)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=3e-3, help="AdamW's peak learning rate")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", default=PAIR_WEIGHTS, help="file name inside weights/")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> float:
    args = parse_args(argv)
    device = torch.device("cpu")
    seed_everything(args.seed, device)
    train_split, val_split, data_name = training_splits(args.mnist_root, args.data)
    started = time.monotonic()
    train = composed(*train_split, args.pairs, args.seed)
    val = composed(*val_split, args.validation_pairs, args.seed + 1)
    print(f"composed {args.pairs} + {args.validation_pairs} examples in "
          f"{time.monotonic() - started:.0f} s", flush=True)
    loader = DataLoader(TensorDataset(*map(torch.from_numpy, train)), batch_size=args.batch_size,
                        shuffle=True, generator=torch.Generator().manual_seed(args.seed))
    val_loader = DataLoader(TensorDataset(*map(torch.from_numpy, val)), batch_size=1000)
    network = PairNet()
    optimizer = torch.optim.AdamW(network.parameters(), lr=args.lr, weight_decay=1e-2)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=args.lr,
                                                    epochs=args.epochs,
                                                    steps_per_epoch=len(loader))
    accuracy = 0.0
    for epoch in range(1, args.epochs + 1):
        network.train()
        total = 0.0
        for inputs, targets in loader:
            optimizer.zero_grad()
            left, right = network(inputs)
            loss = F.cross_entropy(left, targets[:, 0]) + F.cross_entropy(right, targets[:, 1])
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += loss.item() * len(targets)
        accuracy = pair_accuracy(network, val_loader)
        print(f"epoch {epoch}: training loss {total / len(loader.dataset):.4f}, "
              f"validation: both heads right {accuracy:.2%}", flush=True)
    out = folder_paths.get_full_path("weights", args.out)
    save_pair_reader(network, out, {
        "architecture": "pair-conv",
        "data": data_name,
        "data_credit": DATA_CREDIT,
        "training_examples": args.pairs,
        "validation_examples": args.validation_pairs,
        "epochs": args.epochs,
        "seed": args.seed,
        "validation_accuracy": round(accuracy, 4),
        "command": shlex.join(["python", "-m", "training.pairs",
                               *(sys.argv[1:] if argv is None else argv)]),
    })
    print(f"wrote {out}, {onnx_path(out).name} and {card_path(out).name} after "
          f"{(time.monotonic() - started) / 60:.1f} minutes")
    return accuracy


if __name__ == "__main__":
    main()
