"""Capacity planning and CI: replays, sweeps, reports, the hunt."""
