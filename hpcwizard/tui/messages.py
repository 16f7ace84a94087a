"""Messages that carry worker results back to the UI thread.

Workers never touch widgets; they post one of these and the screen's handler
updates the UI.
"""

from __future__ import annotations
