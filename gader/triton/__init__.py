"""Triton python-backend templates that ``gader export`` copies into a model repository.

``gar_model.py`` and ``detector_model.py`` run inside Triton's python backend stub (they import
``triton_python_backend_utils``, which only exists there) and need only torch and numpy.
"""
