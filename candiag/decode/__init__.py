"""Decoding: DBC loading with address masks, and the vectorized batch decoder."""
