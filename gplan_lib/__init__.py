"""gplan_lib: a runnable reproduction of GPlan (generative spatiotemporal intent sequence
recommendation). The notebooks under notebooks/ narrate; the code lives here."""
__version__ = "0.1.0"
