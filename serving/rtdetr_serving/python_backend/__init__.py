"""The Triton python-backend model file (``model.py``) of the CPU repository flavour.

It is copied into ``<model>/1/model.py`` by the repository writer and imported by Triton's
python backend stub, never by this package.
"""
