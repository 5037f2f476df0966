"""HTTP controllers: parse input, call one domain function, return a schema."""
