"""PE kinds and meshes: YAML files under boards/, checked against a schema."""
