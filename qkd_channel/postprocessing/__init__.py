"""Post-processing of raw QKD key as a two-party protocol over a classical channel."""

from qkd_channel.postprocessing.channel import ClassicalChannel, InMemoryChannel

__all__ = ["ClassicalChannel", "InMemoryChannel"]
