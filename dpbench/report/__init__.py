"""Reports built from run records: the leaderboard."""
