"""One base class for errors whose message is written for the user.

The CLI prints these as `musicssl: error: …` and the GUI shows them in a dialog; anything else is
a bug and keeps its traceback. A torch-free module, so catching them imports nothing heavy.
"""


class MusicSSLError(Exception):
    """Bad input, a missing file, an unusable library or model: say what and where, then stop."""
