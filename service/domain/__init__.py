"""Queries and rules. Domain code may flush but never commits: the edges own transactions."""
