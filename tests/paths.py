"""Where things are, for tests in any folder under tests/."""

from pathlib import Path

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
FIXTURES = TESTS / "fixtures"
VECTORS = TESTS / "vectors"
RUNTIME = REPO / "zephyr_app"
EXAMPLES = REPO / "examples"
