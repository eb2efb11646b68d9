"""Fields shared by every NAR config (`nar.config.make_config`); named configs change a few."""

from nar import config as config_lib

apply_overrides = config_lib.apply_overrides


def base_config():
  """The defaults every named config starts from (`nar.config.make_config`)."""
  return config_lib.make_config()
