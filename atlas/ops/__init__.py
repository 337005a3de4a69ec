"""What atlas-ops and atlas do, reachable from tests without a terminal."""
