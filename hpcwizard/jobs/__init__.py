"""The jobs of a chain: submission (and its journal), status, triage of their logs, estimates, continuation across time limits, and the doctor's resubmission."""
