"""The end-to-end demonstration behind ``qkd-notary demo`` and ``make demo``."""

from notary.demo.scenario import DemoConfig, DemoOutcome, run_demo

__all__ = ["DemoConfig", "DemoOutcome", "run_demo"]
