"""The recipe that builds the default model's training corpus (recipe time only, never at run time).

Two halves, each in its own module: openly licensed game soundtracks from Debian packages
(`debian_soundtracks`, real music with soundtrack = album, the style signal DESIGN.md found) and
labelled synthetic multi-instrument pieces (`synth_midi` writes MIDI, `render` plays it through
FluidSynth), described by one manifest (`manifest`) that fixes the held-out splits. `build`
runs the recipe; `heldout` measures a model on the held-out parts only.
"""
