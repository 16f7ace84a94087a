"""The project: its plan and recipe, the rendered scripts, its state on disk, the files it lives in (local or over SSH) and the wizard's session."""
