"""The application layer: the ``camlens`` command, ``camlens evaluate``, the offline demo, the model
zoo, figures and the ImageNet class names.

It imports the library (:mod:`camlens` and :mod:`camlens.metrics`); the library never imports it.
"""
