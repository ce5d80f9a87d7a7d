"""Command-line tools built on the serving chain."""
