"""``python -m atomic_swap`` runs the ``qswap`` CLI."""

from atomic_swap.cli import main

main()
