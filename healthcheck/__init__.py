"""Stoker's health checker: a pure policy, one-attempt checkers, and the loop that paces them."""
