"""Diagnosis: rules turning health state into findings with evidence, causes and fixes."""
