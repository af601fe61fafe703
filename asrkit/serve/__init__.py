"""The search page: an archive service and the web app of ``asrkit serve``."""
