"""The multi-worker load test: uvicorn workers sharing a group over Redis (see `run`)."""
