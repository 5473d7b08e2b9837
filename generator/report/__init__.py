"""``pemesh report``: plan vs built memory, cycles, traffic, a picture of the mesh."""
