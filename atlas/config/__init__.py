"""Configuration files: env files with provenance, the production guard, the generated reference.

`atlas.config.loader.load_settings` is the entry point; `atlas.config.loader.collect` is what
`atlas-ops config validate | show | diff` use to see every finding instead of the first.
"""
