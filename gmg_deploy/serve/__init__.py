"""Stage: serve - Triton model repositories for forecast graphs, and running tritonserver on them."""
