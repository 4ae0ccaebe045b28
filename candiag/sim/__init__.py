"""The simulated reference charger: the only code in candiag that transmits on a CAN bus."""
