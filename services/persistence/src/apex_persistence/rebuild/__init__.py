"""Rebuilding a read model from the log into a fresh table set (or key space) and
swapping it in while the live view keeps serving."""
