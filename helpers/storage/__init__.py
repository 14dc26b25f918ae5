"""Storage formats of the project's own: sparse weights, packed low-bit weights, compressed files."""
