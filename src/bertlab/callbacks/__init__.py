"""Lightning callbacks of our own: only what Lightning does not ship."""
