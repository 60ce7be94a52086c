"""Simulated channels and callees, their CDR and ground truth."""
