"""Floor 9, stage serve - Triton model repositories for forecast graphs, and running tritonserver on them.

Imports floors 0-8."""
