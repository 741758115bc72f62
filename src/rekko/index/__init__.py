"""Top-K search over score vectors (brute force now; approximate indexes plug in here)."""
