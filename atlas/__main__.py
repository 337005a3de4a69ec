from atlas.cli.main import atlas

atlas()
