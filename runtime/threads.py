"""CPU thread shares: processes that share the cores each keep to their part of them."""

from __future__ import annotations

import os


def available_cores() -> int:
    """The cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def limit_threads(count: int) -> None:
    """Run torch's CPU kernels on ``count`` threads in this process (0 keeps torch's default)."""
    if count > 0:
        import torch  # only the torch backends and training get here

        torch.set_num_threads(count)


def serial_blas() -> None:
    """numpy's BLAS and LAPACK (OpenBLAS, and OpenCV's own) on one thread in this process.

    What they compute while serving is small: least-squares fits over an image's
    pixels, the non-digit head over a batch's features. On more threads OpenBLAS
    wakes its pool for each, and on two shared cores the pool's threads fought
    the workers for them: a batch of 8 through the non-digit head took 16 ms on
    two threads and 0.07 ms on one, and two gunicorn workers answered 15% more
    28x28 PNGs a second with one.
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")


def limit_threads_in_worker(worker_id: int) -> None:
    """``worker_init_fn`` for DataLoader workers: each handles one item at a time, on one thread.

    Without it every worker would start a thread per core and oversubscribe them.
    """
    limit_threads(1)
