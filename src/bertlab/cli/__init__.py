"""The command line and the run folder: how a command starts, what the user typed, the folder it writes."""
