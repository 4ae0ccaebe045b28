"""Data shipped with candiag: diagnosis rules and thresholds, reference DBCs, meter profiles."""
