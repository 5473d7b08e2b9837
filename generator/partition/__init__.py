"""Sharding, pipeline cuts (exact DP) and placement of stages on the mesh."""
