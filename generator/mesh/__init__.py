"""Running PEs: launch (QEMU or host), host links, the fabric (NoC model)."""
