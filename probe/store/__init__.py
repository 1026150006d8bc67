"""HDF5 result stores: writers, schema and tidy readers (see docs/store.md)."""
