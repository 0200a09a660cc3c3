//! An example third-party backend plugin, built as a `cdylib`. Not implemented yet.
