"""Modbus RS-485/TCP meters: profiles as data, read-only coalesced polling, link health, simulated meters."""
