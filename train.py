"""Train the digit network and write its weights and card into ``weights/``.

    python train.py                       # the MNIST subset in ../shared/data
    python train.py --mnist-root ~/data   # torchvision's MNIST files, where you have them

Training is reproducible (fixed seeds, deterministic kernels). Every tenth
digit of the subset (indices 9, 19, 29, ...; 1,000 digits, all ten classes,
since the subset is sorted by label) is never trained on: those digits are the
validation set, and every test fixture made from digits comes from them.
Each training digit is varied afresh every epoch (``augment.py``) and then
passes through ``preprocess.normalise_digit``, the same centring that uploads
get, so the network learns from what it is served; validation digits are only
centred.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, TensorDataset
from tqdm import tqdm

import folder_paths
from augment import AugmentationRanges, AugmentedDigits
from model import (
    ARCHITECTURES,
    DATA_CREDIT,
    build_network,
    card_path,
    file_sha256,
    resolve_device,
)
from preprocess import normalise_digit, to_model_input

DEFAULT_SUBSET = folder_paths.base_path().parent / "shared" / "data" / "mnist_train_subset.npz"
HELD_OUT_EVERY = 10  # digit i is held out when i % HELD_OUT_EVERY == HELD_OUT_EVERY - 1


def load_subset(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 28, 28) uint8 and labels (N,) from the subset's ``.npz``."""
    with np.load(path) as data:
        return data["images"], data["labels"].astype(np.int64)


def held_out_mask(count: int) -> np.ndarray:
    """True for the subset's fixed held-out digits (every tenth one)."""
    return np.arange(count) % HELD_OUT_EVERY == HELD_OUT_EVERY - 1


def split_subset(images: np.ndarray, labels: np.ndarray) -> tuple[tuple, tuple]:
    """The training part and the fixed held-out part of the subset."""
    held = held_out_mask(len(images))
    return (images[~held], labels[~held]), (images[held], labels[held])


def load_torchvision_mnist(root: Path) -> tuple[tuple, tuple]:
    """torchvision's MNIST train split for training and its test split for validation."""
    from torchvision.datasets import MNIST

    train = MNIST(str(root), train=True, download=False)
    test = MNIST(str(root), train=False, download=False)
    return (
        (train.data.numpy(), train.targets.numpy().astype(np.int64)),
        (test.data.numpy(), test.targets.numpy().astype(np.int64)),
    )


def to_dataset(images: np.ndarray, labels: np.ndarray) -> TensorDataset:
    """Digits centred as uploads are, normalised, as a ``TensorDataset``."""
    inputs = torch.stack([to_model_input(normalise_digit(image)) for image in images])
    return TensorDataset(inputs, torch.from_numpy(labels))


def seed_everything(seed: int, device: torch.device) -> None:
    """Fixed seeds and deterministic kernels.

    On CUDA, PyTorch lacks deterministic kernels for a few operations; there it
    warns about them instead of stopping, so that training still runs.
    """
    # cuBLAS is deterministic only with a fixed workspace; it reads this before its first use.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(True, warn_only=device.type == "cuda")


def train_epoch(network, loader, optimizer, scheduler, device, epoch: int,
                label_smoothing: float = 0.0) -> float:
    """One pass over ``loader``, stepping the learning rate per batch; the mean training loss."""
    network.train()
    total, count = 0.0, 0
    progress = tqdm(loader, desc=f"epoch {epoch}", unit="batch", leave=False)
    for inputs, targets in progress:
        inputs, targets = inputs.to(device), targets.to(device)
        optimizer.zero_grad()
        loss = F.cross_entropy(network(inputs), targets, label_smoothing=label_smoothing)
        loss.backward()
        optimizer.step()
        scheduler.step()
        total += loss.item() * len(targets)
        count += len(targets)
        progress.set_postfix(loss=f"{loss.item():.4f}")
    return total / count


def evaluate(network, loader, device) -> float:
    """Accuracy (0..1) of ``network`` on ``loader``."""
    network.eval()
    correct = 0
    with torch.inference_mode():
        for inputs, targets in loader:
            predictions = network(inputs.to(device)).argmax(dim=1).cpu()
            correct += int((predictions == targets).sum())
    return correct / len(loader.dataset)


def write_atomically(path: Path, write) -> None:
    """Write through a temporary file in the same folder, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(handle)
    try:
        write(Path(temporary))
        os.chmod(temporary, 0o644)  # mkstemp creates files readable by the owner only
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def save_weights(network, path: Path, card: dict) -> None:
    """Save the ``state_dict`` and its JSON card (with the file's sha256) beside it."""
    state = {name: tensor.detach().cpu() for name, tensor in network.state_dict().items()}
    # Saved through memory: torch.save names the archive inside after the file it writes
    # to, and the temporary file's random name would make equal weights hash differently.
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_atomically(path, lambda target: target.write_bytes(buffer.getvalue()))
    card = {**card, "weights": path.name, "sha256": file_sha256(path)}
    text = json.dumps(card, indent=2) + "\n"
    write_atomically(card_path(path), lambda target: target.write_text(text, encoding="utf-8"))


def limit_threads_in_worker(worker_id: int) -> None:
    """DataLoader workers augment one digit at a time: one thread each avoids oversubscription."""
    torch.set_num_threads(1)


def training_loader(images: np.ndarray, labels: np.ndarray, args: argparse.Namespace) -> DataLoader:
    """Shuffled batches of training digits, varied afresh each epoch unless ``--no-augment``."""
    dataset: Dataset
    if args.augment:
        dataset = AugmentedDigits(images, labels, seed=args.seed)
    else:
        dataset = to_dataset(images, labels)
    # Workers are not persistent: they start afresh each epoch and so see its number.
    return DataLoader(
        dataset, batch_size=args.batch_size, shuffle=True,
        generator=torch.Generator().manual_seed(args.seed),
        num_workers=args.workers if args.augment else 0,
        worker_init_fn=limit_threads_in_worker,
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_SUBSET, help="the subset .npz")
    parser.add_argument(
        "--mnist-root", type=Path, help="train on torchvision's MNIST files in this folder instead"
    )
    parser.add_argument("--arch", choices=sorted(ARCHITECTURES), default="bn-conv")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3, help="AdamW's peak learning rate")
    parser.add_argument("--weight-decay", type=float, default=1e-2, help="AdamW's weight decay")
    parser.add_argument("--label-smoothing", type=float, default=0.0)
    parser.add_argument("--augment", action=argparse.BooleanOptionalAction, default=True,
                        help="vary the training digits each epoch (--no-augment: use them as is)")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    parser.add_argument("--limit", type=int, help="train on only the first N training digits")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--out", default="model.pt", help="file name inside weights/")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> float:
    args = parse_args(argv)
    device = resolve_device(args.device)
    seed_everything(args.seed, device)
    if args.mnist_root:
        train_split, val_split = load_torchvision_mnist(args.mnist_root)
        data_name = f"torchvision MNIST in {args.mnist_root} (train split; validated on test split)"
    else:
        train_split, val_split = split_subset(*load_subset(args.data))
        data_name = (f"{args.data.name}: digits with index % {HELD_OUT_EVERY} == "
                     f"{HELD_OUT_EVERY - 1} held out for validation")
    (train_images, train_labels), (val_images, val_labels) = train_split, val_split
    if args.limit:
        train_images, train_labels = train_images[: args.limit], train_labels[: args.limit]

    train_loader = training_loader(train_images, train_labels, args)
    val_loader = DataLoader(to_dataset(val_images, val_labels), batch_size=1000)

    network = build_network(args.arch).to(device)
    optimizer = torch.optim.AdamW(network.parameters(), lr=args.lr,
                                  weight_decay=args.weight_decay)
    # One cycle: a short warm-up to the peak rate, then a long cosine decay to almost zero.
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=args.lr, epochs=args.epochs, steps_per_epoch=len(train_loader)
    )
    accuracy = 0.0
    started = time.monotonic()
    for epoch in range(1, args.epochs + 1):
        if args.augment:
            train_loader.dataset.epoch = epoch
        loss = train_epoch(network, train_loader, optimizer, scheduler, device, epoch,
                           args.label_smoothing)
        accuracy = evaluate(network, val_loader, device)
        print(f"epoch {epoch}: training loss {loss:.4f}, validation accuracy {accuracy:.2%}",
              flush=True)

    correct = round(accuracy * len(val_images))
    out = folder_paths.get_full_path("weights", args.out)
    save_weights(network, out, {
        "architecture": args.arch,
        "data": data_name,
        "data_credit": DATA_CREDIT,
        "augmentation": AugmentationRanges().describe() if args.augment else "none",
        "training_digits": len(train_images),
        "validation_digits": len(val_images),
        "epochs": args.epochs,
        "seed": args.seed,
        "validation_accuracy": round(accuracy, 4),
        "validation_correct": correct,
        "command": shlex.join(["python", "train.py", *(sys.argv[1:] if argv is None else argv)]),
    })
    minutes = (time.monotonic() - started) / 60
    print(f"wrote {out} and {card_path(out).name}: validation accuracy {accuracy:.2%} "
          f"({correct}/{len(val_images)}) after {minutes:.1f} minutes of training")
    return accuracy


if __name__ == "__main__":
    main()
