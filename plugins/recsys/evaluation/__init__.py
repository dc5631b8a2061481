"""Offline evaluation: ranking metrics over time-split windows."""
