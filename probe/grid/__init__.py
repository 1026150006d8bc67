"""Study grids: declarative specs (``analyses/*.toml``), resumable runs, local and Dask executors."""
