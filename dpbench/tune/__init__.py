"""Hyperparameter choice on a public proxy task (`dpbench tune`); see protocol.py for the protocol."""
