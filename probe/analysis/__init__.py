"""Analyses of measured studies: pure functions from tidy metric frames to tables (no files, no plotting)."""
