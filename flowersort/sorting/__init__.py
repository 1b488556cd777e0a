"""A classify run, its journal and lock, tagging, the user's corrections, ask and
adapt."""
