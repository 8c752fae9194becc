"""How the shipped data was made: offline builders, outside the package."""
