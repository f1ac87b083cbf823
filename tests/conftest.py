"""Fixtures shared by every suite."""
