"""click groups only: parse, call into atlas.ops / the engine, print."""
