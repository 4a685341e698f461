"""The drivers that run the core: a discrete-event loop and trio tasks."""
