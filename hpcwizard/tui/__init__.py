"""The Textual face of hpcwizard: screens and widgets only.

Domain logic lives outside this package (plan, recipe, render, slurm, hub,
download, status...) and never imports Textual.
"""
