"""Hardware-in-the-loop tests and fixtures (the Project API ``device`` fixture)."""
