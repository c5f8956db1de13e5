"""``qkd-notary`` (also ``python -m notary``): says which extra to install when one is missing."""

from qkd_channel.extras import launch

__all__ = ["main"]


def main() -> None:
    launch(
        "qkd-notary",
        (
            "server",
            "chain",
        ),
        "notary.cli:entry",
    )


if __name__ == "__main__":
    main()
