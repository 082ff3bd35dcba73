"""Storage: the file layer (`files`: atomic writes, local or object stores) and the record
file format (`records`)."""
