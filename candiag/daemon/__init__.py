"""The daemon: configuration loading/validation and ``candiag run``."""
