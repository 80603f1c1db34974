"""Panel views of a zoo: one viewer per analysis, usable inline in JupyterLab and inside the app."""
