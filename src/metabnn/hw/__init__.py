"""The FINN build stage: EXPORT dir -> BUILD dir (HW layers, folding, estimates, HDL, deploy/).

Entry point: ``metabnn.hw.build.build``; boards: ``metabnn.hw.boards.BOARDS``. FINN is
imported lazily (through ``metabnn.hw.finn_env``) so that importing this package is cheap.
"""
