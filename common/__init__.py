"""Project-wide pieces every package may import: the error root and machine facts."""
