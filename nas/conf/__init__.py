"""Hydra configuration of `logah-nas` (groups: space, data, hypernet, study). See nas/config/.

A file whose name starts with `_` (e.g. `hypernet/_shared.yaml`) holds keys a group's choices
share through their defaults list; it is not a choice itself. Nor is `study_lr/<space>.yaml`: the
defaults list picks it by the space (`${space}`) to give each space its default `study.lr`; a study
file that sets `lr`, and `study.lr=[lo,hi]`, win.
"""
