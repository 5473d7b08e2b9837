"""Anchor references and the checks of run outputs against them."""
