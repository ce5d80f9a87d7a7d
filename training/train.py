"""Train the digit network and write its weights and card into ``weights/``.

    python -m training.train                       # the MNIST subset in ../shared/data
    python -m training.train --mnist-root ~/data   # torchvision's MNIST files, where you have them

Training is reproducible (fixed seeds, deterministic kernels). The subset's
fixed held-out tenth (``training.data``) is the validation set. Each training
digit is varied (``training.augment``: a few varied copies made beforehand and
cycled through, or with ``--copies 0`` afresh every epoch) and then passes
through ``imaging.preprocess.normalise_digit``, exactly the chain a 28x28
upload goes through, so the network learns from what it is served; validation
digits go through that chain unvaried. With ``--teacher`` the network also
learns trained networks' softened answers (knowledge distillation): that is
how the served ``bn-conv-slim`` weights learnt from ``bn-conv`` networks.
"""

from __future__ import annotations

import argparse
import io
import math
import os
import random
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, TensorDataset
from tqdm import tqdm

import folder_paths
from imaging.normalise import to_model_input
from imaging.preprocess import normalise_digit
from model import DATA_CREDIT, DEFAULT_WEIGHTS, WeightsCard, card_path, read_checked
from network.architectures import ARCHITECTURES, build_network
from network.weights import save_weights
from runtime.devices import resolve_device
from runtime.threads import limit_threads_in_worker
from training.augment import AugmentationRanges, AugmentedDigits, CopiedDigits, make_copies
from training.data import default_subset, training_splits

# The int8 form's activation ranges are measured on this many training digits.
CALIBRATION_DIGITS = 200


def to_dataset(images: np.ndarray, labels: np.ndarray) -> TensorDataset:
    """Digits centred as uploads are, normalised, as a ``TensorDataset``."""
    inputs = torch.from_numpy(np.stack([to_model_input(normalise_digit(image))
                                        for image in images]))
    return TensorDataset(inputs, torch.from_numpy(labels))


def calibration_inputs(images: np.ndarray, count: int = CALIBRATION_DIGITS) -> np.ndarray:
    """Training digits spread over all classes, centred as uploads are, for int8 calibration."""
    step = max(1, len(images) // count)
    return np.stack([to_model_input(normalise_digit(image)) for image in images[::step][:count]])


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


@dataclass(frozen=True)
class Teacher:
    """Trained networks whose softened answers a new network learns as well as the labels
    (knowledge distillation, Hinton, Vinyals and Dean 2015). Several networks teach as one
    ensemble: their softened probabilities averaged."""

    networks: tuple[torch.nn.Module, ...]
    weight: float  # the share of the loss that is the teacher's, the rest the labels'
    temperature: float

    def softened(self, inputs: torch.Tensor) -> torch.Tensor:
        """The log of the ensemble's mean probabilities at the temperature."""
        with torch.no_grad():
            answers = torch.stack([F.log_softmax(network(inputs) / self.temperature, dim=1)
                                   for network in self.networks])
            return torch.logsumexp(answers, dim=0) - math.log(len(self.networks))


def training_loss(logits: torch.Tensor, targets: torch.Tensor, inputs: torch.Tensor,
                  label_smoothing: float = 0.0, teacher: Teacher | None = None) -> torch.Tensor:
    """Cross-entropy with the labels, blended with the teacher's softened answers if any."""
    loss = F.cross_entropy(logits, targets, label_smoothing=label_smoothing)
    if teacher is None:
        return loss
    temperature = teacher.temperature
    # Scaled by the temperature squared, so the soft targets' gradients keep their size.
    distilled = F.kl_div(F.log_softmax(logits / temperature, dim=1), teacher.softened(inputs),
                         log_target=True, reduction="batchmean") * temperature**2
    return (1 - teacher.weight) * loss + teacher.weight * distilled


def train_epoch(network, loader, optimizer, scheduler, device, epoch: int,
                label_smoothing: float = 0.0, teacher: Teacher | None = None) -> float:
    """One pass over ``loader``, stepping the learning rate per batch; the mean training loss."""
    network.train()
    total, count = 0.0, 0
    progress = tqdm(loader, desc=f"epoch {epoch}", unit="batch", leave=False)
    for inputs, targets in progress:
        inputs, targets = inputs.to(device), targets.to(device)
        optimizer.zero_grad()
        loss = training_loss(network(inputs), targets, inputs, label_smoothing, teacher)
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


def training_loader(images: np.ndarray, labels: np.ndarray, args: argparse.Namespace) -> DataLoader:
    """Shuffled batches of training digits, varied afresh each epoch unless ``--no-augment``."""
    dataset: Dataset
    workers = 0
    if args.augment and args.copies:
        augmented = AugmentedDigits(images, labels, seed=args.seed)
        started = time.monotonic()
        copies = make_copies(augmented, args.copies, args.workers, limit_threads_in_worker)
        print(f"made {args.copies} varied copies of {len(images)} digits in "
              f"{time.monotonic() - started:.0f} s", flush=True)
        dataset = CopiedDigits(copies, labels)
    elif args.augment:
        dataset, workers = AugmentedDigits(images, labels, seed=args.seed), args.workers
    else:
        dataset = to_dataset(images, labels)
    # Workers are not persistent: they start afresh each epoch and so see its number.
    return DataLoader(
        dataset, batch_size=args.batch_size, shuffle=True,
        generator=torch.Generator().manual_seed(args.seed),
        num_workers=workers, worker_init_fn=limit_threads_in_worker,
    )


def initialise(network: torch.nn.Module, name: str, architecture: str) -> dict[str, str]:
    """Load the weights file ``name`` (checked against its card) into ``network``; their record."""
    card, state = read_committed(name, architecture)
    network.load_state_dict(state)
    return weights_record(name, card)


def load_teacher(args: argparse.Namespace, device: torch.device) -> tuple[Teacher, dict]:
    """The ``--teacher`` weights (each checked against its card) as one frozen ``Teacher``,
    and their records for the new card."""
    networks, records = [], []
    for name in args.teacher:
        card, state = read_committed(name)
        network = build_network(card.architecture)
        network.load_state_dict(state)
        networks.append(network.to(device).eval().requires_grad_(False))
        records.append({**weights_record(name, card), "architecture": card.architecture})
    teacher = Teacher(tuple(networks), args.distill_weight, args.distill_temperature)
    return teacher, {"teachers": records, "weight": teacher.weight,
                     "temperature": teacher.temperature}


def read_committed(name: str, architecture: str | None = None) -> tuple[WeightsCard, dict]:
    """The card of the weights file ``name`` inside weights/ and its state dict, read only
    if the file's sha256 matches the card's (and its architecture is ``architecture``,
    where given)."""
    path = folder_paths.get_full_path("weights", name)
    card = WeightsCard.read(path)
    if architecture is not None and card.architecture != architecture:
        raise SystemExit(f"error: {name} holds {card.architecture!r} weights, not {architecture!r}")
    data = read_checked(path, card.sha256)
    return card, torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def weights_record(name: str, card: WeightsCard) -> dict[str, str]:
    """What a card says of other weights it was made from."""
    return {"weights": name, "sha256": card.sha256,
            "validation_accuracy": card.validation_accuracy, "command": card.raw.get("command")}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=default_subset(), help="the subset .npz")
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
    parser.add_argument("--copies", type=int, default=5,
                        help="varied copies made beforehand and cycled through "
                             "(0: vary every digit afresh in every epoch)")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    parser.add_argument("--limit", type=int, help="train on only the first N training digits")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--init", help="start from these weights (a file name inside weights/, "
                                       "checked against its card) instead of from scratch")
    parser.add_argument("--teacher", nargs="+",
                        help="also learn the softened answers of these weights (file names "
                             "inside weights/, each checked against its card; several teach "
                             "as one ensemble): knowledge distillation")
    parser.add_argument("--distill-weight", type=float, default=0.5,
                        help="the teacher's share of the loss (the labels have the rest)")
    parser.add_argument("--distill-temperature", type=float, default=3.0,
                        help="the temperature that softens both networks' answers")
    parser.add_argument("--out", default=DEFAULT_WEIGHTS, help="file name inside weights/")
    parser.add_argument("--calibrate", action=argparse.BooleanOptionalAction, default=True,
                        help="fit the temperature and the non-digit head afterwards "
                             "(training.calibrate)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> float:
    args = parse_args(argv)
    device = torch.device(resolve_device(args.device))
    seed_everything(args.seed, device)
    train_split, val_split, data_name = training_splits(args.mnist_root, args.data)
    (train_images, train_labels), (val_images, val_labels) = train_split, val_split
    if args.limit:
        train_images, train_labels = train_images[: args.limit], train_labels[: args.limit]

    train_loader = training_loader(train_images, train_labels, args)
    val_loader = DataLoader(to_dataset(val_images, val_labels), batch_size=1000)

    network = build_network(args.arch)
    initialised_from = initialise(network, args.init, args.arch) if args.init else None
    teacher, distilled_from = load_teacher(args, device) if args.teacher else (None, None)
    network = network.to(device)
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
                           args.label_smoothing, teacher)
        accuracy = evaluate(network, val_loader, device)
        print(f"epoch {epoch}: training loss {loss:.4f}, validation accuracy {accuracy:.2%}",
              flush=True)

    correct = round(accuracy * len(val_images))
    out = folder_paths.get_full_path("weights", args.out)
    save_weights(network, out, {
        "architecture": args.arch,
        "data": data_name,
        "data_credit": DATA_CREDIT,
        "augmentation": (AugmentationRanges().describe()
                         + (f"; {args.copies} varied copies cycled through" if args.copies else "")
                         if args.augment else "none"),
        "training_digits": len(train_images),
        "validation_digits": len(val_images),
        "epochs": args.epochs,
        "seed": args.seed,
        **({"initialised_from": initialised_from} if initialised_from else {}),
        **({"distilled_from": distilled_from} if distilled_from else {}),
        "validation_accuracy": round(accuracy, 4),
        "validation_correct": correct,
        "command": shlex.join(["python", "-m", "training.train",
                               *(sys.argv[1:] if argv is None else argv)]),
    }, calibration=calibration_inputs(train_images))
    minutes = (time.monotonic() - started) / 60
    print(f"wrote {out} and {card_path(out).name}: validation accuracy {accuracy:.2%} "
          f"({correct}/{len(val_images)}) after {minutes:.1f} minutes of training")
    if args.calibrate:
        # Freshly trained weights come calibrated, by the same code `make calibrate` runs.
        from training.calibrate import calibrate_weights

        summary = calibrate_weights(out, (train_images, train_labels), (val_images, val_labels))
        print(f"calibrated: temperature {summary['temperature']}, non-digit head fitted "
              f"({summary['seconds']} s)")
    return accuracy


if __name__ == "__main__":
    main()
