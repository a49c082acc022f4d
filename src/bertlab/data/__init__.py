"""Where text comes from (sources), how it is cleaned (clean), and how it becomes batches (datamodule)."""
