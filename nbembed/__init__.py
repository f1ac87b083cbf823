"""nbembed's operator tools (``python -m nbembed.admin``)."""
