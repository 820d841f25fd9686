"""The configuration of one training run: :class:`ado_ray.schema.RunConfig`, under the name the
training loop has always used. Torch-free, like all of :mod:`ado_ray.schema`."""

from ado_ray.schema import RunConfig as TrainConfig

__all__ = ["TrainConfig"]
