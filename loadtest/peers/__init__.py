"""Peers the load tester compares varigate with: real servers of other projects, installed on demand."""
