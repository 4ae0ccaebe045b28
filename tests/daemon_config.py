"""The config of a daemon watching one simulated charger bus, shared by the daemon tests."""

from __future__ import annotations


def sim_config(channel: str, *, scenario: str = "healthy", meters: bool = False) -> str:
    """TOML: bus ``sim0`` on the virtual ``channel`` with 8 expected power modules, metrics
    on a free loopback port, a 0.1 s processing loop, and the in-process simulator."""
    return f"""
[[can.buses]]
name = "sim0"
interface = "virtual"
channel = "{channel}"
[[can.buses.families]]
name = "power_module"
expected = ["1-8"]
[metrics]
listen = "127.0.0.1:0"
[daemon]
processing_interval_s = 0.1
[simulator]
buses = ["sim0"]
scenario = "{scenario}"
meters = {str(meters).lower()}
"""
