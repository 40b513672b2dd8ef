"""Preparer: to be written (see issue 2)."""
