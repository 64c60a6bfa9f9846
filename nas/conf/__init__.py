"""Hydra configuration of `logah-nas` (groups: space, data, hypernet, study). See nas/config.py."""
