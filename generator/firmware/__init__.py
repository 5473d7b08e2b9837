"""Per-PE Zephyr apps (render), toolchains, builds, config stamping, ELF sizes."""
