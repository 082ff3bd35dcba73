"""Storage: the file layer (`files`: atomic writes and folder locks, local or object
stores) and the record file format (`records`)."""
