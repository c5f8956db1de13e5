"""``qkd-kme`` (also ``python -m qkd_channel``): says which extra to install when one is missing."""

from qkd_channel.extras import launch

__all__ = ["main"]


def main() -> None:
    launch(
        "qkd-kme",
        (
            "server",
            "sim",
        ),
        "qkd_channel.cli:entry",
    )


if __name__ == "__main__":
    main()
