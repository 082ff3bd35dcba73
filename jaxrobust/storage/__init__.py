"""Storage: files written atomically (local or object stores) and the record file format."""
