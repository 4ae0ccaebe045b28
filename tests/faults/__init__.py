"""Fault matrix: end-to-end tests of what the user sees when links, disks and peers fail."""
