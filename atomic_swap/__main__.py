"""``qswap`` (also ``python -m atomic_swap``): says which extra to install when one is missing."""

from qkd_channel.extras import launch

__all__ = ["main"]


def main() -> None:
    launch("qswap", ("swap",), "atomic_swap.cli:entry")


if __name__ == "__main__":
    main()
