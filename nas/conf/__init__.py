"""Hydra configuration of `logah-nas` (groups: space, data, hypernet, study). See nas/config/.

A file whose name starts with `_` (e.g. `hypernet/_shared.yaml`) holds keys a group's choices
share through their defaults list; it is not a choice itself.
"""
