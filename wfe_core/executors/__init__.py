"""Executors that ship with wfe-core (only ``shell``); each registers through the entry point
group ``wfe.executors`` like any third-party executor."""
